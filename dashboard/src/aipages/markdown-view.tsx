import type { JSX } from 'preact';
import { useMemo } from 'preact/hooks';

import { parseMarkdown, type Block, type Inline } from './markdown';

function Inlines({ nodes }: { nodes: Inline[] }) {
  return (
    <>
      {nodes.map((node, i) => {
        switch (node.type) {
          case 'text':
            return node.text;
          case 'code':
            return <code key={i}>{node.text}</code>;
          case 'strong':
            return (
              <strong key={i}>
                <Inlines nodes={node.children} />
              </strong>
            );
          case 'em':
            return (
              <em key={i}>
                <Inlines nodes={node.children} />
              </em>
            );
          case 'del':
            return (
              <del key={i}>
                <Inlines nodes={node.children} />
              </del>
            );
          case 'break':
            return <br key={i} />;
          case 'link':
            return node.href ? (
              <a key={i} href={node.href} target="_blank" rel="noopener noreferrer nofollow">
                <Inlines nodes={node.children} />
              </a>
            ) : (
              // A link with an unsafe URL keeps its words, not its target.
              <span key={i} class="ai-dead-link">
                <Inlines nodes={node.children} />
              </span>
            );
        }
      })}
    </>
  );
}

function Blocks({ blocks }: { blocks: Block[] }) {
  return (
    <>
      {blocks.map((block, i) => {
        switch (block.type) {
          case 'heading': {
            // Inside a component, Markdown headings sit below the page's and the region's.
            const Tag = `h${Math.min(6, block.level + 2)}` as keyof JSX.IntrinsicElements;
            return (
              <Tag key={i}>
                <Inlines nodes={block.children} />
              </Tag>
            );
          }
          case 'paragraph':
            return (
              <p key={i}>
                <Inlines nodes={block.children} />
              </p>
            );
          case 'code':
            return (
              <pre key={i} class="ai-code" tabIndex={0}>
                <code>{block.text}</code>
              </pre>
            );
          case 'quote':
            return (
              <blockquote key={i}>
                <Blocks blocks={block.children} />
              </blockquote>
            );
          case 'rule':
            return <hr key={i} />;
          case 'list': {
            const items = block.items.map((item, j) => (
              <li key={j}>
                {item.length === 1 && item[0].type === 'paragraph' ? <Inlines nodes={item[0].children} /> : <Blocks blocks={item} />}
              </li>
            ));
            return block.ordered ? (
              <ol key={i} start={block.start}>
                {items}
              </ol>
            ) : (
              <ul key={i}>{items}</ul>
            );
          }
          case 'table':
            return (
              <div key={i} class="ai-table-wrap" tabIndex={0}>
                <table>
                  <thead>
                    <tr>
                      {block.head.map((cell, c) => (
                        <th key={c} scope="col" style={block.align[c] ? { textAlign: block.align[c] } : undefined}>
                          <Inlines nodes={cell} />
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {block.rows.map((row, r) => (
                      <tr key={r}>
                        {row.map((cell, c) => (
                          <td key={c} style={block.align[c] ? { textAlign: block.align[c] } : undefined}>
                            <Inlines nodes={cell} />
                          </td>
                        ))}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            );
        }
      })}
    </>
  );
}

/** Markdown from the AI as elements and text nodes. */
export function MarkdownView({ source }: { source: string }) {
  const blocks = useMemo(() => parseMarkdown(source), [source]);
  return (
    <div class="ai-markdown">
      <Blocks blocks={blocks} />
    </div>
  );
}
