import { useMemo } from 'preact/hooks';

import { FormView, type SendInput } from './form-view';
import { MarkdownView } from './markdown-view';
import { PlotlyPanel } from './plotly-panel';
import { arrange, panelFigure, type ComponentEntry, type PageModel, type PlacedRegion, type RouteEntry } from './reducer';

export type SendFor = (address: string) => SendInput;

interface ComponentProps {
  model: PageModel;
  entry: ComponentEntry;
  sendFor: SendFor;
  showAddress: boolean;
}

/** A panel's figure with its routed dataset; worked out again only when either changes, so a
 * text update elsewhere on the page does not redraw large charts. */
function PanelView({ entry, route }: { entry: ComponentEntry; route: RouteEntry | null }) {
  const panel = useMemo(() => panelFigure(route, entry), [entry, route]);
  if (!panel) return null;
  return (
    <>
      {panel.datasetError && (
        <p class="notice notice-error" role="alert">
          The dataset routed here could not be loaded: {panel.datasetError}
        </p>
      )}
      {panel.notes.map((note) => (
        <p key={note} class="notice notice-down">
          {note}
        </p>
      ))}
      <PlotlyPanel address={entry.address} figure={panel.figure} />
    </>
  );
}

function ComponentBody({ model, entry, sendFor }: Omit<ComponentProps, 'showAddress'>) {
  const { content } = entry;
  switch (content.type) {
    case 'text':
      return (
        <>
          {content.text.label && <h3 class="ai-label">{content.text.label}</h3>}
          {content.text.format === 'markdown' ? <MarkdownView source={content.text.text} /> : <p class="ai-plain">{content.text.text}</p>}
        </>
      );
    case 'form':
      return <FormView key={entry.seq} address={entry.address} form={content.form} send={sendFor(entry.address)} />;
    case 'figure':
      return <PanelView entry={entry} route={model.route} />;
    case 'failed':
      return (
        <p class="notice notice-error" role="alert">
          <strong>{entry.address}</strong> could not show {content.directive} (directive #{entry.seq}): {content.reason}
        </p>
      );
  }
}

function ComponentView(props: ComponentProps) {
  const { entry, showAddress } = props;
  return (
    <div class={`ai-component ai-${entry.kind}`} data-address={entry.address}>
      {showAddress && <code class="ai-address">{entry.address}</code>}
      <ComponentBody {...props} />
    </div>
  );
}

function RegionView({ region, ...rest }: { region: PlacedRegion } & Omit<ComponentProps, 'entry'>) {
  return (
    <section class="ai-region" style={{ gridArea: region.area }} aria-label={region.title || region.area} data-area={region.area}>
      {region.title && <h2>{region.title}</h2>}
      {region.entry && <ComponentView entry={region.entry} {...rest} />}
    </section>
  );
}

/** The components of a page, in the layout-manager's grid when it set one. */
export function PageView({ model, sendFor, showAddresses }: { model: PageModel; sendFor: SendFor; showAddresses: boolean }) {
  const arrangement = useMemo(() => arrange(model), [model]);
  const common = { model, sendFor, showAddress: showAddresses };
  const { grid, unplaced } = arrangement;
  const routeError = model.route?.error && model.route.to.length === 0 ? model.route.error : null;
  return (
    <div class="ai-page">
      {arrangement.layoutError && (
        <p class="notice notice-down" role="alert">
          The page's layout could not be used, so its components are shown one after another. {arrangement.layoutError}
        </p>
      )}
      {routeError && (
        <p class="notice notice-error" role="alert">
          The dataset-router's last directive could not be used: {routeError}
        </p>
      )}
      {grid && (
        <div
          class="ai-grid"
          style={{
            gridTemplateAreas: grid.areas.map((row) => `"${row}"`).join(' '),
            gridTemplateColumns: grid.columns?.join(' '),
            gridTemplateRows: grid.rows?.join(' '),
            gap: grid.gap,
          }}
        >
          {grid.regions.map((region) => (
            <RegionView key={region.area} region={region} {...common} />
          ))}
        </div>
      )}
      {unplaced.length > 0 && (
        <div class="ai-flow">
          {unplaced.map((entry) => (
            <ComponentView key={entry.address} entry={entry} {...common} />
          ))}
        </div>
      )}
      {!grid && unplaced.length === 0 && <p class="muted ai-empty">Nothing is on this page yet. What the AI sends appears here as it arrives.</p>}
    </div>
  );
}
