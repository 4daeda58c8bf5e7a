// The ProseMirror editor bound to the shared Y.XmlFragment('prosemirror') with y-prosemirror,
// as Open WebUI's notes do: ySyncPlugin, yCursorPlugin (awareness) and yUndoPlugin.

import { EditorState } from 'prosemirror-state';
import { EditorView } from 'prosemirror-view';
import { Schema, DOMSerializer } from 'prosemirror-model';
import { schema as basicSchema } from 'prosemirror-schema-basic';
import { addListNodes, wrapInList, splitListItem, liftListItem, sinkListItem } from 'prosemirror-schema-list';
import { keymap } from 'prosemirror-keymap';
import { baseKeymap, toggleMark, setBlockType, wrapIn, chainCommands, exitCode } from 'prosemirror-commands';
import {
  inputRules, wrappingInputRule, textblockTypeInputRule, smartQuotes, emDash, ellipsis,
} from 'prosemirror-inputrules';
import { dropCursor } from 'prosemirror-dropcursor';
import { gapCursor } from 'prosemirror-gapcursor';
import {
  ySyncPlugin, yCursorPlugin, yUndoPlugin, undo, redo, undoCommand, redoCommand, initProseMirrorDoc,
} from 'y-prosemirror';
import { h } from './util.js';

export const schema = new Schema({
  nodes: addListNodes(basicSchema.spec.nodes, 'paragraph block*', 'block'),
  marks: basicSchema.spec.marks,
});

const { nodes, marks } = schema;

function rules() {
  return inputRules({
    rules: [
      ...smartQuotes, ellipsis, emDash,
      wrappingInputRule(/^\s*>\s$/, nodes.blockquote),
      wrappingInputRule(/^(\d+)\.\s$/, nodes.ordered_list, (m) => ({ order: +m[1] }), (m, node) => node.childCount + node.attrs.order === +m[1]),
      wrappingInputRule(/^\s*([-+*])\s$/, nodes.bullet_list),
      textblockTypeInputRule(/^```$/, nodes.code_block),
      textblockTypeInputRule(/^(#{1,3})\s$/, nodes.heading, (m) => ({ level: m[1].length })),
    ],
  });
}

function keys() {
  const hardBreak = chainCommands(exitCode, (state, dispatch) => {
    if (dispatch) dispatch(state.tr.replaceSelectionWith(nodes.hard_break.create()).scrollIntoView());
    return true;
  });
  return keymap({
    'Mod-b': toggleMark(marks.strong),
    'Mod-i': toggleMark(marks.em),
    'Mod-`': toggleMark(marks.code),
    'Shift-Enter': hardBreak,
    'Mod-Enter': hardBreak,
    Enter: splitListItem(nodes.list_item),
    'Mod-[': liftListItem(nodes.list_item),
    'Mod-]': sinkListItem(nodes.list_item),
    Tab: sinkListItem(nodes.list_item),
    'Shift-Tab': liftListItem(nodes.list_item),
    'Shift-Ctrl-0': setBlockType(nodes.paragraph),
    'Shift-Ctrl-1': setBlockType(nodes.heading, { level: 1 }),
    'Shift-Ctrl-2': setBlockType(nodes.heading, { level: 2 }),
    'Shift-Ctrl-8': wrapInList(nodes.bullet_list),
    'Shift-Ctrl-9': wrapInList(nodes.ordered_list),
    'Ctrl->': wrapIn(nodes.blockquote),
  });
}

const undoCmd = (state) => undo(state);
const redoCmd = (state) => redo(state);

/// A small toolbar; each button runs a ProseMirror command.
function toolbar(getView) {
  const buttons = [
    ['B', 'Bold (Ctrl+B)', toggleMark(marks.strong), 'strong'],
    ['I', 'Italic (Ctrl+I)', toggleMark(marks.em), 'em'],
    ['</>', 'Code (Ctrl+`)', toggleMark(marks.code), 'code'],
    '|',
    ['¶', 'Paragraph', setBlockType(nodes.paragraph)],
    ['H1', 'Heading 1', setBlockType(nodes.heading, { level: 1 })],
    ['H2', 'Heading 2', setBlockType(nodes.heading, { level: 2 })],
    '|',
    ['•', 'Bullet list', wrapInList(nodes.bullet_list)],
    ['1.', 'Numbered list', wrapInList(nodes.ordered_list)],
    ['❝', 'Quote', wrapIn(nodes.blockquote)],
    '|',
    ['↶', 'Undo (Ctrl+Z)', undoCmd],
    ['↷', 'Redo (Ctrl+Shift+Z)', redoCmd],
  ];
  return h(
    'div.toolbar',
    { role: 'toolbar', 'aria-label': 'Formatting' },
    buttons.map((b) => {
      if (b === '|') return h('span.sep');
      const [label, title, command, cls] = b;
      return h(`button.tool${cls ? `.tool-${cls}` : ''}`, {
        type: 'button',
        title,
        'aria-label': title,
        on: {
          mousedown: (e) => e.preventDefault(), // keep the editor's selection
          click: () => {
            const view = getView();
            command(view.state, view.dispatch, view);
            view.focus();
          },
        },
      }, label);
    }),
  );
}

/// Mounts the editor into `mount`; returns {view, toolbar, content()}.
export function createEditor(mount, sync, awareness) {
  // An empty fragment gives an empty (schema-invalid) doc that has no place for a cursor:
  // ProseMirror would fall back to an AllSelection that y-prosemirror then keeps restoring
  // over the content arriving later, so the first keystroke would replace everything. Start
  // from an empty paragraph instead; it only reaches Yjs once someone types into it.
  const init = initProseMirrorDoc(sync.fragment, schema);
  const doc = init.doc.childCount > 0 ? init.doc : schema.topNodeType.createAndFill();
  const { mapping } = init;
  let view;
  const bar = toolbar(() => view);
  view = new EditorView(mount, {
    state: EditorState.create({
      doc,
      schema,
      plugins: [
        ySyncPlugin(sync.fragment, { mapping }),
        yCursorPlugin(awareness),
        yUndoPlugin(),
        keymap({ 'Mod-z': undoCommand, 'Mod-y': redoCommand, 'Mod-Shift-z': redoCommand }),
        keys(),
        keymap(baseKeymap),
        rules(),
        dropCursor(),
        gapCursor(),
      ],
    }),
    attributes: { spellcheck: 'false', 'aria-label': 'Document' },
  });
  return { view, toolbar: bar, content: () => content(view.state.doc) };
}

/// `{md, html, json}` of a ProseMirror document: what Open WebUI's notes keep as content.
export function content(doc) {
  const div = document.createElement('div');
  div.append(DOMSerializer.fromSchema(schema).serializeFragment(doc.content));
  return { md: toMarkdown(doc), html: div.innerHTML, json: doc.toJSON() };
}

function inlineMarkdown(node) {
  let out = '';
  node.forEach((child) => {
    if (child.type === nodes.hard_break) {
      out += '  \n';
      return;
    }
    if (child.type === nodes.image) {
      out += `![${child.attrs.alt ?? ''}](${child.attrs.src})`;
      return;
    }
    let text = child.text ?? '';
    const isCode = child.marks.some((m) => m.type === marks.code);
    if (!isCode) text = text.replace(/([\\`*_[\]])/g, '\\$1');
    for (const mark of child.marks) {
      if (mark.type === marks.code) text = `\`${text}\``;
      else if (mark.type === marks.strong) text = `**${text}**`;
      else if (mark.type === marks.em) text = `*${text}*`;
      else if (mark.type === marks.link) text = `[${text}](${mark.attrs.href})`;
    }
    out += text;
  });
  return out;
}

function indent(text, prefix, rest) {
  return text.split('\n').map((line, i) => (i === 0 ? prefix : rest) + line).join('\n');
}

function blockMarkdown(node) {
  switch (node.type) {
    case nodes.paragraph:
      return inlineMarkdown(node);
    case nodes.heading:
      return `${'#'.repeat(node.attrs.level)} ${inlineMarkdown(node)}`;
    case nodes.code_block:
      return `\`\`\`\n${node.textContent}\n\`\`\``;
    case nodes.horizontal_rule:
      return '---';
    case nodes.blockquote:
      return indent(blocksMarkdown(node), '> ', '> ');
    case nodes.bullet_list:
    case nodes.ordered_list: {
      const items = [];
      let n = node.attrs.order ?? 1;
      node.forEach((item) => {
        const marker = node.type === nodes.bullet_list ? '- ' : `${n++}. `;
        items.push(indent(blocksMarkdown(item), marker, ' '.repeat(marker.length)));
      });
      return items.join('\n');
    }
    default:
      return node.textContent;
  }
}

function blocksMarkdown(node) {
  const parts = [];
  node.forEach((child) => parts.push(blockMarkdown(child)));
  return parts.join('\n\n');
}

export function toMarkdown(doc) {
  return blocksMarkdown(doc);
}
