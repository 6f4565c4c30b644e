/** "12 s ago", "3 min ago", "2 h ago", "4 d ago"; a small clock skew into the future reads "just now". */
export function relativeTime(at: string | null | undefined, now: number = Date.now()): string {
  if (!at) return 'never';
  const then = Date.parse(at);
  if (Number.isNaN(then)) return at;
  const seconds = Math.round((now - then) / 1000);
  if (seconds < -5) return `in ${humanSpan(-seconds)}`;
  if (seconds < 2) return 'just now';
  return `${humanSpan(seconds)} ago`;
}

function humanSpan(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h`;
  return `${Math.floor(hours / 24)} d`;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
