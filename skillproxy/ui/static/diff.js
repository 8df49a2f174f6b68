// A word diff of two texts (a skill's content before and after a revision): the longest
// common subsequence of their words, whitespace kept, so the pieces join back into each text.
// Skills are at most 400 characters, so the quadratic table stays small.

import { h } from "./dom.js";

/** Words with the space after each (and any leading space alone), so that a change reads as
 * whole words: "a concrete fix" -> "a refund or a fix" deletes "concrete ", adds "refund or a ". */
function words(text) {
  return (text || "").match(/^\s+|\S+\s*/g) || [];
}

/** `[{op: "same" | "del" | "ins", text}]`, adjacent pieces of one kind merged. */
export function wordDiff(before, after) {
  const a = words(before);
  const b = words(after);
  const rows = a.length + 1;
  const cols = b.length + 1;
  const table = new Uint16Array(rows * cols);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      table[i * cols + j] = a[i] === b[j]
        ? table[(i + 1) * cols + j + 1] + 1
        : Math.max(table[(i + 1) * cols + j], table[i * cols + j + 1]);
    }
  }
  const ops = [];
  const push = (op, text) => {
    const last = ops[ops.length - 1];
    if (last && last.op === op) last.text += text;
    else ops.push({ op, text });
  };
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      push("same", a[i]);
      i++;
      j++;
    } else if (table[(i + 1) * cols + j] >= table[i * cols + j + 1]) {
      push("del", a[i++]);
    } else {
      push("ins", b[j++]);
    }
  }
  while (i < a.length) push("del", a[i++]);
  while (j < b.length) push("ins", b[j++]);
  return ops;
}

/** The diff as elements: removed words in <del>, added ones in <ins>. */
export function diffView(before, after) {
  const tags = { same: "span", del: "del", ins: "ins" };
  return h(
    "p",
    { class: "diff" },
    wordDiff(before, after).map(({ op, text }) => h(tags[op], {}, text)),
  );
}
