import { effect } from '@preact/signals';
import { ErrorBoundary, LocationProvider, Route, Router, lazy, useLocation } from 'preact-iso';

import { connectLive, disconnectLive, liveState, retryIn } from './api/live';
import { credentials, signOut } from './auth';
import { SignIn } from './views/signin';
import { Activity } from './views/activity';
import { Tasks } from './views/tasks';
import { TaskPage } from './views/task';
import { NewTask } from './views/newtask';
import { Agents } from './views/agents';
import { ConfigView } from './views/config';
import { RenderView } from './views/render';
import { Sandboxes } from './views/sandboxes';
import { NotFound } from './views/notfound';

// Plotly is large: the AI pages load it only when opened.
const AiPages = lazy(() => import('./views/pages').then((m) => m.AiPages));
const AiPage = lazy(() => import('./views/aipage').then((m) => m.AiPage));

// The live connection follows the sign-in.
effect(() => {
  if (credentials.value) connectLive();
  else disconnectLive();
});

const NAV: [string, string][] = [
  ['/', 'Activity'],
  ['/tasks', 'Tasks'],
  ['/tasks/new', 'New task'],
  ['/agents', 'Agents'],
  ['/config', 'Config'],
  ['/render', 'Render'],
  ['/sandboxes', 'Sandboxes'],
  ['/pages', 'AI pages'],
];

function Nav() {
  const { path } = useLocation();
  const current = (href: string) =>
    href === '/' ? path === '/' : path === href || (path.startsWith(`${href}/`) && !NAV.some(([h]) => h !== href && h.startsWith(href) && path.startsWith(h)));
  return (
    <nav aria-label="Main">
      <ul>
        {NAV.map(([href, label]) => (
          <li key={href}>
            <a href={href} aria-current={current(href) ? 'page' : undefined}>
              {label}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function LiveIndicator() {
  const state = liveState.value;
  const text =
    state === 'open'
      ? 'Live'
      : state === 'reconnecting'
        ? `Reconnecting${retryIn.value ? ` (${retryIn.value}s)` : ''}…`
        : state === 'connecting'
          ? 'Connecting…'
          : 'Offline';
  return (
    <span class={`live live-${state}`} role="status" aria-live="polite" data-testid="live-state">
      <span class="dot" aria-hidden="true" /> {text}
    </span>
  );
}

function Shell() {
  const { path, query } = useLocation();
  // A sharing token opens one AI page without the operator's sign-in.
  const sharedPage = path.startsWith('/pages/') && Boolean(query.token);
  if (!credentials.value && !sharedPage) return <SignIn />;
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      {!sharedPage && (
        <header class="topbar">
          <a href="/" class="brand">
            Autonoma
          </a>
          <Nav />
          <div class="topbar-right">
            <LiveIndicator />
            <span class="muted">{credentials.value?.user}</span>
            <button type="button" onClick={signOut}>
              Sign out
            </button>
          </div>
        </header>
      )}
      <main id="main" tabIndex={-1}>
        <ErrorBoundary>
          <Router>
            <Route path="/" component={Activity} />
            <Route path="/tasks" component={Tasks} />
            <Route path="/tasks/new" component={NewTask} />
            <Route path="/tasks/:id" component={TaskPage} />
            <Route path="/agents" component={Agents} />
            <Route path="/config" component={ConfigView} />
            <Route path="/render" component={RenderView} />
            <Route path="/sandboxes" component={Sandboxes} />
            <Route path="/sandboxes/:id" component={Sandboxes} />
            <Route path="/pages" component={AiPages} />
            <Route path="/pages/:page" component={AiPage} />
            <Route default component={NotFound} />
          </Router>
        </ErrorBoundary>
      </main>
    </div>
  );
}

export function App() {
  return (
    <LocationProvider>
      <Shell />
    </LocationProvider>
  );
}
