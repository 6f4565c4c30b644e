import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The preview is served under /api/sessions/<id>/preview/proxy/ (AUTONOMA_PREVIEW_BASE), and
// the proxy's Host is rewritten to localhost.
export default defineConfig({
  plugins: [react()],
  base: process.env.AUTONOMA_PREVIEW_BASE ?? "/",
  server: { host: "0.0.0.0", port: 5173, strictPort: true },
});
