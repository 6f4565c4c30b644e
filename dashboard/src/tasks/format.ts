/** A timestamp short enough for a table cell: the time alone when it is today, else date and time. */
export function compactTime(iso: string, now: Date = new Date()): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const sameDay =
    date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
  return sameDay
    ? date.toLocaleTimeString()
    : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}
