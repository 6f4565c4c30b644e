import { useState } from "react";

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <main>
      <h1>Hello from the sandbox</h1>
      <button onClick={() => setCount((c) => c + 1)}>clicked {count} times</button>
    </main>
  );
}
