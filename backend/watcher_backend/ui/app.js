// JCode Watcher dashboard: plain JavaScript, no framework, no CDN (served by the backend at /ui).
// Every page is index.html; the path says which view to draw. Data comes from /api/v1 with the token the
// user typed (sessionStorage: gone when the tab closes), sent as Bearer. Student data (paths, code, command
// lines) is untrusted: it only ever goes into the page as text nodes, never as HTML.
"use strict";

const CONFIG = JSON.parse(document.body.dataset.config);
const TOKEN_KEY = "watcher.token";
const LANG_KEY = "watcher.lang";

// ----------------------------------------------------------------------------------------- labels

const LABELS = {
  en: {
    signIn: "Sign in", signOut: "Sign out", token: "token", other: "한국어",
    needToken: "Sign in with a read token to see the data.", badToken: "The token was refused",
    forbidden: "Not for this token",
    courses: "Courses", course: "Course", section: "Section", assignment: "Assignment", assignments: "Assignments",
    student: "Student", students: "Students", activeStudents: "Active students", events: "Events", saves: "Saves",
    compiles: "Compiles", failedCompiles: "Failed compiles", successRate: "Compile success", runs: "Runs",
    firstActivity: "First activity", lastActivity: "Last activity", activeTime: "Active time",
    codeSize: "Final code size", flags: "Flags", activity: "Activity", stuck: "stuck", largePaste: "large paste",
    exportCsv: "Export CSV", exportProgsnap2: "Export ProgSnap2 (zip)", exporting: "Exporting…",
    perDay: "per day", timesIn: "Times in", noData: "No data yet.",
    thresholds: (t) => `Flags: "stuck" = ${t.stuck_compiles} or more failing compiles in a row with no successful one since; ` +
      `"large paste" = one save made a file ${t.paste_bytes} bytes or more larger (a new file counts from empty).`,
    timeline: "Timeline", time: "Time", type: "Type", file: "File", detail: "Detail",
    save: "save", delete: "delete", tooLarge: "too large", compile: "compile", run: "run", cell: "cell",
    ok: "ok", failed: "failed", exit: "exit", signal: "signal", loadMore: "Load more", shown: "shown",
    code: "Code", diff: "Diff from the previous save", firstSave: "(first save of this file)",
    identical: "(no change)", binary: "(binary content)", clickSave: "Click a save to see its code and diff.",
    replay: "Replay", replayFile: "File", version: "Version", files: "Files",
    successLegend: "success rate", bytes: "bytes", command: "command",
  },
  ko: {
    signIn: "로그인", signOut: "로그아웃", token: "토큰", other: "English",
    needToken: "데이터를 보려면 읽기 토큰으로 로그인하세요.", badToken: "토큰이 거부되었습니다",
    forbidden: "이 토큰으로는 볼 수 없습니다",
    courses: "과목", course: "과목", section: "분반", assignment: "과제", assignments: "과제",
    student: "학생", students: "학생", activeStudents: "활동 학생", events: "이벤트", saves: "저장",
    compiles: "컴파일", failedCompiles: "실패한 컴파일", successRate: "컴파일 성공률", runs: "실행",
    firstActivity: "첫 활동", lastActivity: "마지막 활동", activeTime: "활동 시간",
    codeSize: "최종 코드 크기", flags: "표시", activity: "활동", stuck: "막힘", largePaste: "대량 붙여넣기",
    exportCsv: "CSV 내보내기", exportProgsnap2: "ProgSnap2 내보내기 (zip)", exporting: "내보내는 중…",
    perDay: "일별", timesIn: "시간대", noData: "아직 데이터가 없습니다.",
    thresholds: (t) => `표시: "막힘" = 성공 없이 연속 ${t.stuck_compiles}회 이상 컴파일 실패; ` +
      `"대량 붙여넣기" = 한 번의 저장으로 파일이 ${t.paste_bytes}바이트 이상 커짐 (새 파일은 빈 파일에서 계산).`,
    timeline: "타임라인", time: "시간", type: "종류", file: "파일", detail: "내용",
    save: "저장", delete: "삭제", tooLarge: "너무 큼", compile: "컴파일", run: "실행", cell: "셀",
    ok: "성공", failed: "실패", exit: "종료 코드", signal: "시그널", loadMore: "더 보기", shown: "표시됨",
    code: "코드", diff: "이전 저장과의 차이", firstSave: "(이 파일의 첫 저장)",
    identical: "(변경 없음)", binary: "(바이너리 내용)", clickSave: "저장을 클릭하면 코드와 차이를 볼 수 있습니다.",
    replay: "재생", replayFile: "파일", version: "버전", files: "파일",
    successLegend: "성공률", bytes: "바이트", command: "명령",
  },
};
const LANG = localStorage.getItem(LANG_KEY) === "ko" ? "ko" : "en";
const L = LABELS[LANG];
document.documentElement.lang = LANG;

// ----------------------------------------------------------------------------------------- helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const zone = CONFIG.timeZone;
const locale = LANG === "ko" ? "ko-KR" : "en-GB";
// Made on first use, not at load: building a formatter loads the zone data, and the page's JSON request
// should start before that.
let timeFmt = null, shortFmt = null;
function fmtTime(iso) {
  timeFmt ||= new Intl.DateTimeFormat(locale, { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return iso ? timeFmt.format(new Date(iso)) : "";
}
function fmtShort(ms) {
  shortFmt ||= new Intl.DateTimeFormat(locale, { timeZone: zone, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
  return shortFmt.format(new Date(ms));
}
const fmtPct = (x) => (x === null || x === undefined ? "" : `${(x * 100).toFixed(1)}%`);
function fmtDuration(seconds) {
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m}m` : `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}
const enc = encodeURIComponent;

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, kind = "json") {
  const early = window.watcherEarly;  // index.html's request for this page's data, taken over once
  if (early && early.url === path) window.watcherEarly = null;
  const res = await (early && early.url === path ? early.response : fetch(path, { headers: authHeaders() }));
  if (!res.ok) {
    let detail = res.statusText;
    try { const body = await res.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
    throw new ApiError(res.status, detail);
  }
  return kind === "json" ? res.json() : kind === "text" ? res.text() : res.blob();
}

function download(blob, name) {
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function csvCell(v) {
  const t = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}
function downloadCsv(name, columns, rows) {
  const lines = [columns.map((c) => csvCell(c.label)).join(",")];
  for (const r of rows) lines.push(columns.map((c) => csvCell(c.csv ? c.csv(r) : r[c.key])).join(","));
  download(new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv" }), name);
}

// The page is ready (the navigation-timing benchmark and the browser tests wait for this).
function ready() {
  performance.mark("watcher-ready");
  document.body.dataset.ready = "1";
}

// ----------------------------------------------------------------------------------------- tables

// columns: {key, label, text?, value?(row) for sorting, render?(row) -> node/string, csv?(row)}
function sortableTable(columns, rows, { sortKey, descending = false, id } = {}) {
  let key = sortKey || columns[0].key;
  let desc = descending;
  const tbody = h("tbody");
  const heads = columns.map((c) =>
    h("th", { class: c.text ? "text" : null, "data-key": c.key, onclick: () => { desc = key === c.key ? !desc : false; key = c.key; draw(); } }, c.label));
  const table = h("table", { id }, h("thead", {}, h("tr", {}, heads)), tbody);
  function value(c, r) { return c.value ? c.value(r) : r[c.key]; }
  function draw() {
    const c = columns.find((x) => x.key === key);
    const sorted = rows.slice().sort((a, b) => {
      const x = value(c, a), y = value(c, b);
      const cmp = x === y ? 0 : x === null || x === undefined ? -1 : y === null || y === undefined ? 1 : x < y ? -1 : 1;
      return desc ? -cmp : cmp;
    });
    table.sortedRows = sorted;  // what the CSV export writes: the table as shown
    heads.forEach((th, i) => th.setAttribute("aria-sort", columns[i].key === key ? (desc ? "descending" : "ascending") : "none"));
    tbody.replaceChildren(...sorted.map((r) => h("tr", { "data-row": r[columns[0].key] },
      columns.map((col) => h("td", { class: col.text ? "text" : null }, col.render ? col.render(r) : value(col, r) ?? "")))));
  }
  draw();
  return table;
}

// ----------------------------------------------------------------------------------------- charts

// A small line chart of one series per day (SVG drawn here; no library).
function lineChart(title, days, series) {
  const W = 300, H = 120, P = { l: 30, r: 8, t: 8, b: 18 };
  const n = days.length;
  const max = Math.max(1, ...series.flatMap((sr) => sr.values.filter((v) => v !== null)));
  const x = (i) => P.l + (n <= 1 ? (W - P.l - P.r) / 2 : (i * (W - P.l - P.r)) / (n - 1));
  const y = (v) => H - P.b - (v / (series[0].max || max)) * (H - P.t - P.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": title });
  svg.append(s("line", { x1: P.l, x2: W - P.r, y1: H - P.b, y2: H - P.b, stroke: "#d9dee7" }));
  svg.append(s("text", { x: 2, y: P.t + 8 }, series[0].max ? "100%" : String(max)));
  svg.append(s("text", { x: 2, y: H - P.b }, "0"));
  if (n) {
    svg.append(s("text", { x: P.l, y: H - 4 }, days[0].day.slice(5)));
    if (n > 1) svg.append(s("text", { x: W - P.r, y: H - 4, "text-anchor": "end" }, days[n - 1].day.slice(5)));
  }
  for (const sr of series) {
    const pts = sr.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (pts.length > 1) svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: sr.color, "stroke-width": 1.5 }));
    sr.values.forEach((v, i) => { if (v !== null) svg.append(s("circle", { cx: x(i), cy: y(v), r: 2, fill: sr.color }, s("title", {}, `${days[i].day}: ${sr.max ? fmtPct(v) : v}`))); });
  }
  const legend = h("div", { class: "legend" }, series.map((sr) => h("span", {}, h("i", { style: `background:${sr.color}` }), sr.label)));
  return h("div", { class: "chart" }, h("div", { class: "title" }, title), svg, legend);
}

// A student's activity: events per bin of heat_bin_hours hours (binned by the backend), darker = more.
// Cells are shaded in HEAT_LEVELS steps and each step is one <path> of all its cells: an assignment page
// holds 200 strips of up to 120 cells, and 24,000 <rect>s took the browser longer than the data's fetch.
const HEAT_LEVELS = 5;
function heatStrip(cells, bins, width = 240) {
  bins = Math.max(1, bins);
  let max = 1;
  for (const [, n] of cells) if (n > max) max = n;
  const w = width / bins, cw = Math.max(w, 1).toFixed(2);
  const paths = Array.from({ length: HEAT_LEVELS }, () => []);
  for (const [b, n] of cells) paths[Math.max(0, Math.ceil((HEAT_LEVELS * n) / max) - 1)].push(`M${(b * w).toFixed(2)} 0h${cw}v14h-${cw}z`);
  let inner = `<rect x="0" y="0" width="${width}" height="14" fill="#eef1f5"/>`;
  paths.forEach((d, level) => { if (d.length) inner += `<path class="l${level}" d="${d.join("")}" fill="rgba(47,111,222,${(0.2 + (0.8 * (level + 1)) / HEAT_LEVELS).toFixed(2)})"/>`; });
  const svg = s("svg", { class: "heat", width, height: 14, viewBox: `0 0 ${width} 14` });
  svg.innerHTML = inner;
  return svg;
}

// ----------------------------------------------------------------------------------------- views

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");

function setCrumbs(parts) {
  crumbs.replaceChildren(...parts.map(([label, href]) => (href ? h("a", { href }, label) : h("span", {}, label))));
}

const coursePath = (c) => `/courses/${enc(c)}`;
const assignmentPath = (c, sec, a) => `${coursePath(c)}/sections/${enc(sec)}/assignments/${enc(a)}`;

async function viewCourses() {
  setCrumbs([]);
  const data = await api("/api/v1/courses?limit=1000");
  main.replaceChildren(h("h1", {}, L.courses));
  if (!data.courses.length) main.append(h("p", { class: "muted" }, L.noData));
  for (const c of data.courses) {
    const rows = c.sections.flatMap((sec) => sec.assignments.map((a) => ({ ...a, section: sec.section })));
    main.append(h("div", { class: "card course" },
      h("h2", {}, h("a", { href: `/ui${coursePath(c.course)}` }, c.course)),
      sortableTable([
        { key: "assignment", label: L.assignment, text: true, render: (r) => h("a", { href: `/ui${assignmentPath(c.course, r.section, r.assignment)}` }, r.assignment) },
        { key: "section", label: L.section, text: true },
        { key: "students", label: L.students },
        { key: "saves", label: L.saves },
        { key: "compiles", label: L.compiles },
        { key: "runs", label: L.runs },
        { key: "last_activity", label: L.lastActivity, render: (r) => fmtTime(r.last_activity) },
      ], rows)));
  }
}

async function viewCourse(course) {
  setCrumbs([[course]]);
  const data = await api(`/api/v1${coursePath(course)}/activity`);
  const columns = [
    { key: "assignment", label: L.assignment, text: true, render: (r) => h("a", { href: `/ui${assignmentPath(course, r.section, r.assignment)}` }, r.assignment) },
    { key: "section", label: L.section, text: true },
    { key: "students", label: L.activeStudents },
    { key: "saves", label: L.saves },
    { key: "compiles", label: L.compiles },
    { key: "compile_success_rate", label: L.successRate, render: (r) => fmtPct(r.compile_success_rate), csv: (r) => r.compile_success_rate ?? "" },
    { key: "runs", label: L.runs },
    { key: "first_activity", label: L.firstActivity, render: (r) => fmtTime(r.first_activity), csv: (r) => fmtTime(r.first_activity) },
    { key: "last_activity", label: L.lastActivity, render: (r) => fmtTime(r.last_activity), csv: (r) => fmtTime(r.last_activity) },
  ];
  const table = sortableTable(columns, data.assignments, { id: "assignments" });
  main.replaceChildren(
    h("h1", {}, `${L.course} ${course}`),
    h("p", { class: "muted" }, `${L.timesIn} ${zone}`),
    h("div", { class: "toolbar" }, h("button", { id: "export-csv", onclick: () => downloadCsv(`${course}-assignments.csv`, columns, table.sortedRows) }, L.exportCsv)),
    table,
  );
  for (const a of data.assignments) {
    const days = a.days;
    main.append(h("div", { class: "card assignment-charts", "data-assignment": `${a.section}/${a.assignment}` },
      h("h2", {}, h("a", { href: `/ui${assignmentPath(course, a.section, a.assignment)}` }, `${a.assignment}`), h("span", { class: "muted" }, ` · ${L.section} ${a.section} · ${L.perDay}`)),
      h("div", { class: "charts" },
        lineChart(L.activeStudents, days, [{ label: L.activeStudents, color: "#16202f", values: days.map((d) => d.active_students) }]),
        lineChart(`${L.saves} / ${L.compiles} / ${L.runs}`, days, [
          { label: L.saves, color: "var(--save)", values: days.map((d) => d.saves) },
          { label: L.compiles, color: "var(--ok)", values: days.map((d) => d.compiles) },
          { label: L.runs, color: "var(--run)", values: days.map((d) => d.runs) },
        ]),
        lineChart(L.successRate, days, [{ label: L.successLegend, color: "var(--ok)", max: 1, values: days.map((d) => (d.compiles ? d.compile_successes / d.compiles : null)) }]),
      )));
  }
}

async function viewAssignment(course, section, assignment) {
  setCrumbs([[course, `/ui${coursePath(course)}`], [`${L.section} ${section}`], [assignment]]);
  const base = `/api/v1${assignmentPath(course, section, assignment)}`;
  const data = await api(`${base}/activity`);
  const studentHref = (r) => `/ui${assignmentPath(course, section, assignment)}/students/${enc(r.student_id)}`;
  const columns = [
    { key: "student_id", label: L.student, text: true, render: (r) => h("a", { href: studentHref(r) }, r.student_id) },
    { key: "first_activity", label: L.firstActivity, render: (r) => fmtTime(r.first_activity), csv: (r) => fmtTime(r.first_activity) },
    { key: "last_activity", label: L.lastActivity, render: (r) => fmtTime(r.last_activity), csv: (r) => fmtTime(r.last_activity) },
    { key: "active_seconds", label: L.activeTime, render: (r) => fmtDuration(r.active_seconds) },
    { key: "saves", label: L.saves },
    { key: "compiles", label: L.compiles },
    { key: "failed_compiles", label: L.failedCompiles },
    { key: "runs", label: L.runs },
    { key: "code_size", label: L.codeSize },
    { key: "flags", label: L.flags, text: true, value: (r) => (r.stuck ? 2 : 0) + (r.large_paste ? 1 : 0),
      csv: (r) => [r.stuck ? "stuck" : "", r.large_paste ? "large paste" : ""].filter(Boolean).join(" "),
      render: (r) => h("span", {},
        r.stuck ? h("span", { class: "flag stuck", title: `${r.fail_streak}` }, L.stuck) : null,
        r.large_paste ? h("span", { class: "flag paste", title: `${r.max_growth_path}: +${r.max_growth} ${L.bytes}` }, L.largePaste) : null) },
    { key: "heat", label: L.activity, text: true, value: (r) => r.events, csv: (r) => r.events, render: (r) => heatStrip(r.heat, Math.ceil(data.heat_hours / data.heat_bin_hours)) },
  ];
  const exportButton = h("button", { id: "export-progsnap2" }, L.exportProgsnap2);
  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    exportButton.textContent = L.exporting;
    try { download(await api(`${base}/export/progsnap2`, "blob"), `progsnap2-${course}-${section}-${assignment}.zip`); }
    finally { exportButton.disabled = false; exportButton.textContent = L.exportProgsnap2; }
  });
  const table = sortableTable(columns, data.per_student, { id: "students" });
  main.replaceChildren(
    h("h1", {}, `${assignment} · ${course} ${L.section} ${section}`),
    h("div", { class: "card" },
      h("div", {}, `${L.students} ${data.students} · ${L.saves} ${data.saves} · ${L.compiles} ${data.compiles} (${fmtPct(data.compile_success_rate)}) · ${L.runs} ${data.runs}`),
      h("p", { class: "muted", id: "thresholds" }, L.thresholds(data.thresholds)),
      h("p", { class: "muted" }, `${L.timesIn} ${zone}`)),
    h("div", { class: "toolbar" },
      h("button", { id: "export-csv", onclick: () => downloadCsv(`${course}-${section}-${assignment}-students.csv`, columns, table.sortedRows) }, L.exportCsv),
      exportButton),
    table,
  );
}

const TYPE_LABEL = { "file.save": "save", "file.delete": "delete", "file.too_large": "tooLarge", "process.compile": "compile", "process.run": "run", "notebook.cell": "cell" };
const succeeded = (e) => (e.type === "notebook.cell" ? !e.error : e.exit_code === 0 && (e.signal === null || e.signal === undefined));
function outcome(e) {
  if (e.type === "notebook.cell") return e.error ? `${L.failed}: ${e.error}` : L.ok;
  if (e.signal !== null && e.signal !== undefined) return `${L.signal} ${e.signal}`;
  if (e.exit_code === null || e.exit_code === undefined) return "";
  return e.type === "process.compile" ? `${e.exit_code === 0 ? L.ok : L.failed} (${L.exit} ${e.exit_code})` : `${L.exit} ${e.exit_code}`;
}
const commandLine = (e) => (e.argv ? e.argv.join(" ") : "");

// Text for innerHTML: the timeline draws up to 1,000 events, and one string assigned once is several
// times faster than 1,000 elements made one by one. Everything from the data goes through esc().
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// One page of the compact timeline (/events) as event objects.
function unpack(page) {
  return page.events.map(([id, ms, type, path, size, sha256, exit_code, signal, argv, error]) =>
    ({ id, timestamp: ms, type: page.types[type], path: page.paths[path], size, sha256, exit_code, signal, argv, error }));
}

async function viewStudent(course, section, assignment, student) {
  setCrumbs([[course, `/ui${coursePath(course)}`], [`${L.section} ${section}`], [assignment, `/ui${assignmentPath(course, section, assignment)}`], [student]]);
  const base = `/api/v1${assignmentPath(course, section, assignment)}/students/${enc(student)}`;
  // Contents are addressed by hash alone: say whose save it is, so a section-scoped token may open it.
  const owner = `course=${enc(course)}&section=${enc(section)}&assignment=${enc(assignment)}&student_id=${enc(student)}`;
  // Bounded: the first page (1000 events) draws at once; "load more" fetches the next.
  const first = await api(`${base}/events?limit=1000`);
  const events = unpack(first);
  let cursor = first.next_cursor;
  const byId = new Map();

  const axis = h("div", { class: "card timeline" });
  const list = h("div", { class: "events card" });
  const codePanel = h("div", { class: "card", id: "code-panel" }, h("p", { class: "muted" }, L.clickSave));
  const replayPanel = h("div", { class: "card replay", id: "replay" });
  const more = h("button", { id: "load-more", hidden: !cursor }, L.loadMore);
  const count = h("span", { class: "muted", id: "shown" });
  more.addEventListener("click", async () => {
    const page = await api(`${base}/events?limit=1000&cursor=${enc(cursor)}`);
    events.push(...unpack(page));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    draw();
  });
  // Clicks on saves, in the axis or the table, by delegation (one listener, not one per event).
  const onSave = (ev) => {
    const target = ev.target.closest("[data-id]");
    const e = target && byId.get(Number(target.dataset.id));
    if (e && e.type === "file.save" && e.sha256) showSave(e);
  };
  axis.addEventListener("click", onSave);
  list.addEventListener("click", onSave);
  axis.addEventListener("mouseover", (ev) => {
    const mark = ev.target.closest(".mark");
    const e = mark && byId.get(Number(mark.dataset.id));
    if (e && !mark.firstChild) mark.append(s("title", {}, `${fmtTime(e.timestamp)} ${L[TYPE_LABEL[e.type]]} ${e.path} ${outcome(e)} ${commandLine(e)}`));
  });

  main.replaceChildren(
    h("h1", {}, `${student} · ${assignment}`),
    h("p", { class: "muted" }, `${L.timesIn} ${zone}`),
    axis, h("div", { class: "toolbar" }, count, more), list, codePanel, replayPanel);

  let selectedId = null;

  async function showSave(e) {
    selectedId = e.id;
    list.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
    const tr = list.querySelector(`tr[data-id="${e.id}"]`);
    if (tr) tr.classList.add("selected");
    const saves = events.filter((x) => x.type === "file.save" && x.path === e.path && x.sha256);
    const i = saves.findIndex((x) => x.id === e.id);
    const prev = i > 0 ? saves[i - 1] : null;
    const [text, diff] = await Promise.all([
      api(`/api/v1/snapshots/${e.sha256}?${owner}`, "text"),
      prev ? api(`/api/v1/diff?from=${prev.sha256}&to=${e.sha256}&${owner}`) : Promise.resolve(null),
    ]);
    const diffPre = h("pre", { class: "code diff", id: "diff" });
    if (!diff) diffPre.textContent = L.firstSave;
    else if (diff.binary) diffPre.textContent = L.binary;
    else if (diff.identical) diffPre.textContent = L.identical;
    else for (const line of diff.diff.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : null;
      diffPre.append(h("span", { class: cls }, line + "\n"));
    }
    codePanel.replaceChildren(
      h("h2", {}, `${e.path} · ${fmtTime(e.timestamp)} · ${e.size} ${L.bytes}`),
      h("div", { class: "split" },
        h("div", {}, h("div", { class: "muted" }, L.code), h("pre", { class: "code", id: "code" }, text)),
        h("div", {}, h("div", { class: "muted" }, L.diff), diffPre)));
  }

  function drawAxis() {
    const W = 1200, H = 90, P = 20;
    const t0 = events.length ? events[0].timestamp : 0, t1 = events.length ? events[events.length - 1].timestamp : 0;
    const x = (t) => (P + (t1 === t0 ? (W - 2 * P) / 2 : ((t - t0) / (t1 - t0)) * (W - 2 * P))).toFixed(1);
    const rows = { "file.save": 18, "file.delete": 18, "file.too_large": 18, "process.compile": 42, "process.run": 66, "notebook.cell": 66 };
    const parts = [];
    for (const [label, yy] of [[L.saves, 18], [L.compiles, 42], [L.runs, 66]]) {
      parts.push(`<line x1="${P}" x2="${W - P}" y1="${yy}" y2="${yy}" stroke="#eef1f5"/><text x="0" y="${yy - 6}">${esc(label)}</text>`);
    }
    if (events.length) {
      parts.push(`<text x="${P}" y="${H - 2}">${esc(fmtShort(t0))}</text><text x="${W - P}" y="${H - 2}" text-anchor="end">${esc(fmtShort(t1))}</text>`);
    }
    // Tooltips are made when the pointer first reaches a mark (below), not for every mark up front.
    for (const e of events) {
      const cx = x(e.timestamp), cy = rows[e.type];
      if (e.type === "file.save") parts.push(`<circle class="mark save" cx="${cx}" cy="${cy}" r="4" fill="var(--save)" data-id="${e.id}"/>`);
      else if (e.type.startsWith("file.")) parts.push(`<circle class="mark" cx="${cx}" cy="${cy}" r="4" fill="none" stroke="var(--muted)" data-id="${e.id}"/>`);
      else parts.push(`<rect class="mark" x="${(cx - 3).toFixed(1)}" y="${cy - 4}" width="6" height="8" fill="${succeeded(e) ? "var(--ok)" : "var(--fail)"}" data-id="${e.id}"/>`);
    }
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", id: "axis" });
    svg.innerHTML = parts.join("");
    axis.replaceChildren(h("h2", {}, L.timeline), svg);
  }

  // The table scrolls in a box of about ten rows: the first FIRST_ROWS are drawn with the page, the rest
  // right after it (a task of its own, so the page is usable first).
  const FIRST_ROWS = 150;
  let listToken = 0;
  function drawList() {
    delete list.dataset.complete;
    const rowHtml = (e) => {
      const cls = e.type === "file.save" ? ` class="save${e.id === selectedId ? " selected" : ""}"` : "";
      const proc = !e.type.startsWith("file.");
      const detail = proc ? outcome(e) : e.size === null || e.size === undefined ? "" : `${e.size} ${L.bytes}`;
      return `<tr data-id="${e.id}"${cls}><td>${esc(fmtTime(e.timestamp))}</td><td class="text">${esc(L[TYPE_LABEL[e.type]] || e.type)}</td>` +
        `<td class="text">${esc(e.path)}</td><td class="text ${proc ? (succeeded(e) ? "ok" : "error") : ""}">${esc(detail)}</td>` +
        `<td class="text">${esc(commandLine(e))}</td></tr>`;
    };
    const head = [L.time, L.type, L.file, L.detail, L.command].map((t, i) => `<th${i ? ' class="text"' : ""}>${esc(t)}</th>`).join("");
    list.innerHTML = `<table id="events"><thead><tr>${head}</tr></thead><tbody>${events.slice(0, FIRST_ROWS).map(rowHtml).join("")}</tbody></table>`;
    count.textContent = `${events.length} ${L.shown}`;
    const mine = ++listToken;
    if (events.length > FIRST_ROWS) {
      setTimeout(() => {
        if (mine !== listToken) return;  // drawn again meanwhile ("load more")
        list.querySelector("tbody").insertAdjacentHTML("beforeend", events.slice(FIRST_ROWS).map(rowHtml).join(""));
        list.dataset.complete = "1";
      }, 0);
    } else {
      list.dataset.complete = "1";
    }
  }

  function drawReplay() {
    const byFile = new Map();
    for (const e of events) if (e.type === "file.save" && e.sha256) { if (!byFile.has(e.path)) byFile.set(e.path, []); byFile.get(e.path).push(e); }
    if (!byFile.size) { replayPanel.replaceChildren(); return; }
    const select = h("select", { id: "replay-file" }, [...byFile.keys()].map((p) => h("option", { value: p }, p)));
    const slider = h("input", { type: "range", id: "replay-slider", min: 0, value: 0, step: 1 });
    const label = h("span", { id: "replay-label", class: "muted" });
    const pre = h("pre", { class: "code", id: "replay-code" });
    let token = 0;
    async function show() {
      const saves = byFile.get(select.value);
      const e = saves[Number(slider.value)];
      label.textContent = `${L.version} ${Number(slider.value) + 1} / ${saves.length} · ${fmtTime(e.timestamp)}`;
      const mine = ++token;
      const text = await api(`/api/v1/snapshots/${e.sha256}?${owner}`, "text");
      if (mine === token) { pre.textContent = text; pre.dataset.version = slider.value; }
    }
    function pick() { const n = byFile.get(select.value).length; slider.max = n - 1; slider.value = n - 1; show(); }
    select.addEventListener("change", pick);
    slider.addEventListener("input", show);
    replayPanel.replaceChildren(h("h2", {}, L.replay), h("div", { class: "toolbar" }, h("label", {}, `${L.replayFile} `, select), label), slider, pre);
    pick();
  }

  function draw() {
    for (const e of events) byId.set(e.id, e);
    drawAxis(); drawList(); drawReplay();
  }
  draw();
}

// ----------------------------------------------------------------------------------------- routing and sign-in

function route() {
  const parts = location.pathname.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return viewCourses();
  if (parts[0] === "courses" && parts.length === 2) return viewCourse(parts[1]);
  if (parts[0] === "courses" && parts.length === 6) return viewAssignment(parts[1], parts[3], parts[5]);
  if (parts[0] === "courses" && parts.length === 8) return viewStudent(parts[1], parts[3], parts[5], parts[7]);
  main.replaceChildren(h("p", { class: "error" }, "?"));
  return Promise.resolve();
}

function setupBar() {
  const form = document.getElementById("signin");
  const input = document.getElementById("token");
  const out = document.getElementById("signout");
  const lang = document.getElementById("lang");
  input.placeholder = L.token;
  document.getElementById("signin-button").textContent = L.signIn;
  out.textContent = L.signOut;
  lang.textContent = L.other;
  const signedIn = !!sessionStorage.getItem(TOKEN_KEY);
  form.hidden = signedIn;
  out.hidden = !signedIn;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (input.value.trim()) { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); location.reload(); }
  });
  out.addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  lang.addEventListener("click", () => { localStorage.setItem(LANG_KEY, LANG === "ko" ? "en" : "ko"); location.reload(); });
}

setupBar();
route().then(ready, (err) => {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const why = !token ? L.needToken : err.status === 403 ? `${L.forbidden}: ${err.message}` : `${L.badToken}: ${err.message}`;
    main.replaceChildren(h("p", { class: "error", id: "auth-error" }, why));
    if (token && err.status === 401) { document.getElementById("signin").hidden = false; }
  } else {
    main.replaceChildren(h("p", { class: "error", id: "load-error" }, String(err.message || err)));
  }
  ready();
});
