export function AiPage() {
  return <h1>AiPage</h1>;
}
