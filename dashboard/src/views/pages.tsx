export function AiPages() {
  return <h1>AiPages</h1>;
}
