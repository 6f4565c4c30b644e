export function NotFound() {
  return (
    <div class="panel">
      <h1>Not found</h1>
      <p>
        There is nothing at this address. <a href="/">Back to the activity stream</a>.
      </p>
    </div>
  );
}
