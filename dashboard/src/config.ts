// Where each service answers. The launcher serves `/config.json` next to the app; a static
// build (Render) bakes the addresses in from VITE_<SERVICE>_URL at build time.

export const SERVICES = [
  'orchestrator',
  'logging',
  'echo-agent',
  'renderctl',
  'sandbox',
  'queue-gateway',
] as const;

export type ServiceName = (typeof SERVICES)[number];

export type ServiceUrls = Record<ServiceName, string>;

const LOCAL_BASE_PORT = 7100;
const LOCAL_OFFSETS: Record<ServiceName, number> = {
  orchestrator: 0,
  logging: 1,
  'echo-agent': 2,
  renderctl: 3,
  sandbox: 4,
  'queue-gateway': 5,
};

function envKey(service: ServiceName): string {
  return `VITE_${service.toUpperCase().replace(/-/g, '_')}_URL`;
}

/** Addresses from the build environment, else the launcher's default ports. */
export function builtInUrls(env: Record<string, string | undefined> = import.meta.env): ServiceUrls {
  const urls = {} as ServiceUrls;
  for (const service of SERVICES) {
    const fromEnv = env[envKey(service)];
    urls[service] = trimSlash(fromEnv || `http://127.0.0.1:${LOCAL_BASE_PORT + LOCAL_OFFSETS[service]}`);
  }
  return urls;
}

/** Merges a `/config.json` document (`{"services": {"orchestrator": "http://…", …}}`). */
export function mergeConfig(base: ServiceUrls, doc: unknown): ServiceUrls {
  const urls = { ...base };
  const services = (doc as { services?: Record<string, unknown> } | null)?.services;
  if (services && typeof services === 'object') {
    for (const service of SERVICES) {
      const url = services[service];
      if (typeof url === 'string' && /^https?:\/\//.test(url)) urls[service] = trimSlash(url);
    }
  }
  return urls;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

let current: ServiceUrls = builtInUrls();

export async function loadConfig(): Promise<ServiceUrls> {
  try {
    const response = await fetch('/config.json', { cache: 'no-store' });
    if (response.ok) current = mergeConfig(current, await response.json());
  } catch {
    // No runtime config: the built-in addresses stand.
  }
  return current;
}

export function serviceUrl(service: ServiceName): string {
  return current[service];
}
