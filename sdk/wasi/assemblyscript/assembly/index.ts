// A kith function in AssemblyScript, built by its own compiler (asc) with the WASI
// shim as a WASI command: Markdown on stdin becomes HTML on stdout — headings,
// paragraphs, bullet lists, **strong**, *emphasis* and `code`, with HTML escaped.
//
//   npm install && npm run build
//   printf '# Hi\n\nSome *text*.\n' | kith call $(kith publish markdown.wasm)
//   <h1>Hi</h1>
//   <p>Some <em>text</em>.</p>
//
// An input with nothing to render is an error: a message on stderr and exit code 2.

function readAll(): string {
  const chunks = new Array<Uint8Array>();
  let total = 0;
  while (true) {
    const buf = new ArrayBuffer(4096);
    const n = process.stdin.read(buf);
    if (n <= 0) break;
    chunks.push(Uint8Array.wrap(buf, 0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    all.set(chunks[i], at);
    at += chunks[i].length;
  }
  return String.UTF8.decode(all.buffer);
}

function escape(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

// Each complete pair of `mark` becomes `open` … `close`; an unpaired mark stays.
function pair(s: string, mark: string, open: string, close: string): string {
  const parts = s.split(mark);
  if (parts.length < 3) return s;
  const paired = ((parts.length - 1) / 2) * 2;
  let out = parts[0];
  for (let i = 1; i < parts.length; i++) {
    if (i <= paired) out += (i % 2 == 1 ? open : close) + parts[i];
    else out += mark + parts[i];
  }
  return out;
}

function inline(s: string): string {
  let t = escape(s);
  t = pair(t, "`", "<code>", "</code>");
  t = pair(t, "**", "<strong>", "</strong>");
  return pair(t, "*", "<em>", "</em>");
}

const lines = readAll().split("\n");
let html = "";
let para = "";
let inList = false;

function flush(): void {
  if (para.length > 0) {
    html += "<p>" + inline(para) + "</p>\n";
    para = "";
  }
}

function closeList(): void {
  if (inList) {
    html += "</ul>\n";
    inList = false;
  }
}

for (let i = 0; i < lines.length; i++) {
  const line = lines[i].trimEnd();
  if (line.length == 0) {
    flush();
    closeList();
    continue;
  }
  let level = 0;
  while (level < line.length && level < 7 && line.charAt(level) == "#") level++;
  if (level > 0 && level <= 6 && line.charAt(level) == " ") {
    flush();
    closeList();
    const tag = "h" + level.toString();
    html += "<" + tag + ">" + inline(line.substring(level + 1).trim()) + "</" + tag + ">\n";
    continue;
  }
  if (line.startsWith("- ") || line.startsWith("* ")) {
    flush();
    if (!inList) {
      html += "<ul>\n";
      inList = true;
    }
    html += "<li>" + inline(line.substring(2).trim()) + "</li>\n";
    continue;
  }
  closeList();
  para += (para.length > 0 ? " " : "") + line.trim();
}
flush();
closeList();

if (html.length == 0) {
  process.stderr.write("nothing to render: the input has no text\n");
  process.exit(2);
}
process.stdout.write(html);
