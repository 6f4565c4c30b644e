import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

import { ApiError } from './api/http';
import { onFrame, onReconnect, type Frame } from './api/live';

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | Error | undefined;
  loading: boolean;
  reload: () => void;
}

/** Loads with `load` whenever `deps` change; the latest answer wins. */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    loadRef
      .current(controller.signal)
      .then((value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(undefined);
      })
      .catch((cause: unknown) => {
        if (controller.signal.aborted) return;
        setError(cause instanceof Error ? cause : new Error(String(cause)));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, error, loading, reload };
}

/** Calls `listener` for every live frame while the component is mounted. */
export function useFrames(listener: (frame: Frame) => void): void {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => onFrame((frame) => ref.current(frame)), []);
}

/** Calls `reload` after the live connection comes back, so nothing missed stays missing. */
export function useRefetchOnReconnect(reload: () => void): void {
  const ref = useRef(reload);
  ref.current = reload;
  useEffect(() => onReconnect(() => ref.current()), []);
}

/** Re-runs `tick` every `ms` while mounted (and the tab is visible). */
export function useInterval(tick: () => void, ms: number): void {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    const id = setInterval(() => {
      if (document.visibilityState !== 'hidden') ref.current();
    }, ms);
    return () => clearInterval(id);
  }, [ms]);
}
