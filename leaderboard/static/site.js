/* Leaderboard site script: vanilla JS, no framework, works from file:// (data comes from <script> globals).
 *
 * Contract for browser tests (stable ids/classes):
 *   body[data-page]            "index" | "checkpoint" | "run" | "compare" | "plots"
 *   index.html
 *     table#leaderboard        ranked rows; thead th[data-key] (click sorts; again reverses; aria-sort set)
 *                              keys: rank, label, team, stage, base_model, parent, suite:<name>, average
 *     tr.row[data-id]          one per checkpoint on the current page; title = lineage "a -> b -> c"
 *                              sorted by rank (the default): ranked rows first (tr.row.ranked), then
 *                              tr.group-head#not-ranked-head
 *                              ("Not ranked") and the rows not ranked (tr.row.not-ranked, their reasons
 *                              in td.label ul.reasons li); span.badge.replay on rows answered by a
 *                              replay: checkpoint, span.badge.spot-check "spot-checked k/K"
 *     #class-config            the class config's columns and settings (hidden without one); #tie-rule
 *     td.cell                  a suite cell; td.cell.unranked = other settings / incomplete (title says why);
 *                              span.reasoning in a reasoning run's cell: ended-inside-reasoning share, mean thinking
 *     table#references         reference rows (tr.reference, span.badge.ref), never in #leaderboard
 *     #filter-team #filter-stage #filter-base (select), #filter-text (input), #row-count
 *     #pager                   button.page-prev, button.page-next, span.page-info ("page 1 of 3")
 *     div.plot                 a plotly figure (#plot-index on the index; .js-plotly-plot once drawn)
 *   run sample browser (runs/<id>/<suite>.html, hash #sample=<id> opens that sample's page)
 *     #filter-correct (""|correct|incorrect), #filter-category, #filter-sample-text, #sample-count
 *     #samples > article.sample[data-id] (.correct | .incorrect) with .prompt .response .target
 *     .extracted .verdict .score (numbers to 3 decimals at most); a reasoning run's response is
 *     details.thinking (collapsed) + .answer (span.badge.unanswered when it ended inside its thinking);
 *     span.badge.truncated on a response
 *     that stopped at the token limit, span.badge.clipped on one shown in part; #pager / #pager-bottom
 *     as above (25 per page)
 *   checkpoint pages: #rank, #average, ul#unranked-reasons (from data/ranks.js)
 *   compare.html (#a=<id>&b=<id>; #b=<id> alone compares with its parent; no hash: the first row
 *                with a parent on the board, against that parent)
 *     select#compare-a, select#compare-b, table#compare-table tbody tr[data-suite] td.delta td.ci,
 *     td.ci[data-lo][data-hi][data-method] (pairedInterval; span.method-note with a title when the
 *     interval is a small-n one, not the bootstrap), #flips li.flip a (links into run pages), #compare-status
 *   window.LB_pairedBootstrap(diffs, strata, resamples), window.LB_pairedInterval(a, b, strata)
 *   plots.html: div.plot#plot-<name>, #no-plots when none
 * Every model/dataset text is inserted with textContent, never innerHTML.
 */
(function () {
  "use strict";
  var PAGE_SIZE = 50, SAMPLES_PER_PAGE = 25, BOOTSTRAP = 1000;
  var root = document.body.getAttribute("data-root") || "";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1); }
  function ci(c) { return c && c.lo !== null && c.lo !== undefined ? "[" + pct(c.lo) + ", " + pct(c.hi) + "]" : ""; }
  /* A number as people read it: at most 3 decimals, no trailing zeros (0.3333333333333333 -> 0.333). */
  function num(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(3)));
  }
  function isRanked(row) { return row.rank !== null && row.rank !== undefined; }
  function lineageText(row) { return row.lineage.map(function (s) { return s.label; }).join(" -> "); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function pager(container, page, pages, onChange) {
    clear(container);
    var prev = el("button", { type: "button", "class": "page-prev" }, "‹ prev");
    var next = el("button", { type: "button", "class": "page-next" }, "next ›");
    prev.disabled = page <= 0; next.disabled = page >= pages - 1;
    prev.addEventListener("click", function () { onChange(page - 1); });
    next.addEventListener("click", function () { onChange(page + 1); });
    container.appendChild(prev);
    container.appendChild(el("span", { "class": "page-info" }, "page " + (page + 1) + " of " + Math.max(pages, 1)));
    container.appendChild(next);
  }

  function drawPlot(div, fig) {
    if (!fig || typeof Plotly === "undefined") { div.textContent = "plot unavailable"; return; }
    Plotly.newPlot(div, fig.data || [], fig.layout || {}, { responsive: true, displaylogo: false });
  }

  /* ---------------- index ---------------- */
  function indexPage() {
    var data = window.LB_INDEX, plots = window.LB_PLOTS || {};
    var state = { key: "rank", dir: 1, page: 0, team: "", stage: "", base: "", text: "" };
    var table = document.getElementById("leaderboard");
    var columns = [
      { key: "rank", label: "#", num: true }, { key: "label", label: "checkpoint" }, { key: "team", label: "team" },
      { key: "stage", label: "stage" }, { key: "base_model", label: "base model" }, { key: "parent", label: "parent" }
    ];
    data.suites.forEach(function (s) {
      columns.push({ key: "suite:" + s.suite, label: s.suite, num: true, suite: s, title: s.metric + (s.settings ?
        " · reference settings " + s.settings.hash + (s.settings.judge ? " · judge " + s.settings.judge : "") +
        (s.settings.limit ? " · --limit " + s.settings.limit : "") : "") });
    });
    columns.push({ key: "average", label: "average", num: true, title: "mean of the ranked cells" });

    function value(row, key) {
      if (key.indexOf("suite:") === 0) {
        var c = row.cells[key.slice(6)];
        return c && c.ranked ? c.value : null;  // unranked cells sort with the missing ones
      }
      return row[key];
    }
    var thead = table.tHead, headRow = el("tr");
    columns.forEach(function (col) {
      var th = el("th", { "data-key": col.key, title: col.title || "sort by " + col.label, "class": col.num ? "num" : null }, col.label);
      th.addEventListener("click", function () {
        if (state.key === col.key) state.dir = -state.dir;
        else { state.key = col.key; state.dir = (col.num && col.key !== "rank") ? -1 : 1; }
        state.page = 0; render();
      });
      headRow.appendChild(th);
    });
    thead.appendChild(headRow);

    [["filter-team", "team"], ["filter-stage", "stage"], ["filter-base", "base_model"]].forEach(function (pair) {
      var select = document.getElementById(pair[0]);
      data.filters[pair[1]].forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
      select.addEventListener("change", function () { state[pair[0].slice(7)] = select.value; state.page = 0; render(); });
    });
    document.getElementById("filter-text").addEventListener("input", function (e) {
      state.text = e.target.value.toLowerCase(); state.page = 0; render();
    });

    function compare(a, b) {
      var x = value(a, state.key), y = value(b, state.key);
      var xm = x === null || x === undefined || x === "", ym = y === null || y === undefined || y === "";
      if (xm || ym) return xm === ym ? a.label.localeCompare(b.label) : (xm ? 1 : -1);  // missing last, both ways
      if (typeof x === "number" && typeof y === "number") return state.dir * (x - y) || a.label.localeCompare(b.label);
      return state.dir * String(x).localeCompare(String(y));
    }

    function unrankedReasons(r) {
      var reasons = Array.isArray(r.unranked_reasons) ? r.unranked_reasons : [];
      if (reasons.length) return reasons;
      return [r.average === null || r.average === undefined ? "nothing ranked" :
        "average over " + r.average_n + " of " + data.ranked_suites + " suites"];
    }
    function render() {
      var rows = data.rows.filter(function (r) {
        return (!state.team || r.team === state.team) && (!state.stage || r.stage === state.stage) &&
          (!state.base || r.base_model === state.base) &&
          (!state.text || (r.label + " " + r.reference).toLowerCase().indexOf(state.text) >= 0);
      }).sort(function (a, b) {  // by rank: ranked rows first, the rest apart; any other column: all together
        return (state.key === "rank" ? (isRanked(a) ? 0 : 1) - (isRanked(b) ? 0 : 1) : 0) || compare(a, b);
      });
      var pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
      state.page = Math.min(state.page, pages - 1);
      Array.prototype.forEach.call(thead.querySelectorAll("th"), function (th) {
        var active = th.getAttribute("data-key") === state.key;
        th.setAttribute("aria-sort", active ? (state.dir > 0 ? "ascending" : "descending") : "none");
        th.classList.toggle("sorted", active);
      });
      var tbody = table.tBodies[0];
      clear(tbody);
      var headed = false;
      rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE).forEach(function (r) {
        var ranked = isRanked(r);
        if (!ranked && !headed && state.key === "rank") {
          var head = el("tr", { "class": "group-head", id: "not-ranked-head" });
          head.appendChild(el("th", { colspan: columns.length }, "Not ranked"));
          tbody.appendChild(head);
          headed = true;
        }
        var tr = el("tr", { "class": "row " + (ranked ? "ranked" : "not-ranked"), "data-id": r.id, title: "lineage: " + lineageText(r) });
        tr.appendChild(el("td", { "class": "num rank", title: ranked ? "rank by average" : "not ranked: " + unrankedReasons(r).join("; ") },
          ranked ? r.rank : "—"));
        var name = el("td", { "class": "label" });
        name.appendChild(el("a", { href: r.href }, r.label));
        if (r.replay) name.appendChild(el("span", { "class": "badge replay", title: "responses replayed from a file (a replay: checkpoint), not generated by a model" }, "replay"));
        if (r.spot_check && typeof r.spot_check.checked === "number") {
          name.appendChild(el("span", { "class": "badge spot-check", title: "staff regenerated " + r.spot_check.checked +
            " samples with the claimed checkpoint" + (r.spot_check.date ? " on " + r.spot_check.date : "") + "; " +
            r.spot_check.agreed + " agreed" }, "spot-checked " + r.spot_check.agreed + "/" + r.spot_check.checked));
        }
        if (!ranked) {
          var list = el("ul", { "class": "reasons" });
          unrankedReasons(r).forEach(function (why) { list.appendChild(el("li", null, why)); });
          name.appendChild(list);
        }
        tr.appendChild(name);
        tr.appendChild(el("td", null, r.team || "—"));
        tr.appendChild(el("td", null, r.stage || "—"));
        tr.appendChild(el("td", null, r.base_model || "—"));
        var parent = el("td", { "class": "parent" });
        if (r.parent_id) parent.appendChild(el("a", { href: "checkpoints/" + r.parent_id + ".html" }, "↳ " + r.parent));
        else parent.textContent = r.parent || "—";
        tr.appendChild(parent);
        data.suites.forEach(function (s) {
          var c = r.cells[s.suite];
          var td = el("td", { "class": "cell num" + (c && !c.ranked ? " unranked" : ""), "data-suite": s.suite });
          if (!c) { td.textContent = "—"; td.classList.add("missing"); }
          else {
            var link = el("a", { href: c.run }, pct(c.value));
            td.appendChild(link);
            td.appendChild(el("span", { "class": "ci" }, " " + ci(c)));
            td.title = c.reason || (s.suite + " " + c.metric + " n=" + c.n + (c.judge ? " judge " + c.judge : ""));
            if (c.reasoning) {
              var thinking = "thinking " + (c.reasoning.thinking === null ? "—" : num(c.reasoning.thinking)) + " " + c.reasoning.unit;
              td.appendChild(el("span", { "class": "reasoning", title: "reasoning " + c.reasoning.mode + ": share of responses that ended inside their thinking (no answer, scored 0); mean " + c.reasoning.unit + " of thinking per sample" },
                " ended in thinking " + pct(c.reasoning.ended) + "% · " + thinking));
              td.title += " · reasoning " + c.reasoning.mode;
            }
          }
          tr.appendChild(td);
        });
        tr.appendChild(el("td", { "class": "num average", title: r.average_n + " ranked suite(s)" },
          pct(r.average) + (r.average !== null && r.average_n < data.suites.length ? " (" + r.average_n + "/" + data.suites.length + ")" : "")));
        tbody.appendChild(tr);
      });
      document.getElementById("row-count").textContent = rows.length + " of " + data.rows.length + " checkpoints";
      pager(document.getElementById("pager"), state.page, pages, function (p) { state.page = p; render(); });
    }

    function renderReferences() {
      var refTable = document.getElementById("references");
      if (!data.references.length) { document.getElementById("references-block").hidden = true; return; }
      var head = el("tr"), suites = data.suites.map(function (s) { return s.suite; });
      data.references.forEach(function (ref) {  // suites only the references report get a column too
        Object.keys(ref.scores).forEach(function (k) { if (suites.indexOf(k) < 0) suites.push(k); });
      });
      ["model", "regime"].concat(suites).concat(["source"]).forEach(function (h) { head.appendChild(el("th", null, h)); });
      refTable.tHead.appendChild(head);
      data.references.forEach(function (ref) {
        var tr = el("tr", { "class": "reference", title: ref.note || "published number, not ranked" });
        var name = el("td");
        name.appendChild(el("span", { "class": "badge ref" }, "reference"));
        name.appendChild(document.createTextNode(" " + ref.model));
        tr.appendChild(name);
        tr.appendChild(el("td", { "class": "regime" }, ref.regime));
        suites.forEach(function (s) { tr.appendChild(el("td", { "class": "num" }, s in ref.scores ? pct(ref.scores[s]) : "—")); });
        var src = el("td");
        src.appendChild(el("a", { href: ref.source, rel: "noopener" }, "source"));
        tr.appendChild(src);
        refTable.tBodies[0].appendChild(tr);
      });
    }
    function renderRules() {
      var config = data.class_config, line = document.getElementById("class-config");
      if (config && line) {
        var parts = ["Class config" + (config.name ? " " + config.name : "") + ": suites " + (config.suites || []).join(", ")];
        parts.push(config.limit === null || config.limit === undefined ? "no --limit" : "--limit " + config.limit);
        if (config.generation && Object.keys(config.generation).length) {
          parts.push("generation " + Object.keys(config.generation).map(function (k) { return k + "=" + config.generation[k]; }).join(", "));
        }
        if (config.judge) parts.push("safety judge " + config.judge);
        if (config.reasoning) {
          parts.push("reasoning " + config.reasoning.mode + (config.reasoning.thinking_budget === null ? "" : ", thinking budget " + config.reasoning.thinking_budget + " tokens"));
        }
        line.textContent = parts.join("; ") + ". A row is ranked when it completed every pinned suite under these settings.";
        line.hidden = false;
      }
      var tie = document.getElementById("tie-rule");
      if (tie) tie.textContent = "Ties: " + (data.tie_rule || "equal averages share the better rank (1, 1, 3)") + ".";
    }
    renderRules();
    renderReferences();
    render();
    var div = document.getElementById("plot-index");
    var fig = plots[div.getAttribute("data-figure")];
    if (fig) drawPlot(div, fig); else div.parentNode.hidden = true;
  }

  /* ---------------- plots ---------------- */
  function plotsPage() {
    var plots = window.LB_PLOTS || {};
    Array.prototype.forEach.call(document.querySelectorAll("div.plot"), function (div) {
      drawPlot(div, plots[div.getAttribute("data-figure")]);
    });
  }

  /* ---------------- sample browser ---------------- */
  function runPage() {
    var run = window.LB_RUN, state = { page: 0, correct: "", cat: "", text: "" };
    var cats = document.getElementById("filter-category");
    run.categories.forEach(function (c) { cats.appendChild(el("option", { value: c }, c)); });
    if (!run.categories.length) cats.parentNode.hidden = true;
    document.getElementById("filter-correct").addEventListener("change", function (e) { state.correct = e.target.value; state.page = 0; render(); });
    cats.addEventListener("change", function (e) { state.cat = e.target.value; state.page = 0; render(); });
    document.getElementById("filter-sample-text").addEventListener("input", function (e) {
      state.text = e.target.value.toLowerCase(); state.page = 0; render();
    });

    function block(cls, label, text) {
      var wrap = el("div", { "class": "field " + cls });
      wrap.appendChild(el("div", { "class": "field-label" }, label));
      wrap.appendChild(el("pre", null, text));
      return wrap;
    }
    function card(s) {
      var art = el("article", { "class": "sample " + (s.correct ? "correct" : "incorrect"), "data-id": s.id, id: "sample-" + s.id });
      var head = el("header");
      head.appendChild(el("span", { "class": "sample-id" }, s.id));
      head.appendChild(el("span", { "class": "verdict " + (s.correct ? "ok" : "bad") }, s.verdict));
      head.appendChild(el("span", { "class": "score" }, run.score_key + " = " + num(s.s)));
      var cut = s.cut || [], clipped = s.clipped || [];
      if (cut.some(Boolean)) head.appendChild(el("span", { "class": "badge truncated", title: "generation stopped at the max_tokens limit" }, "truncated"));
      if (s.cats.length) head.appendChild(el("span", { "class": "cats" }, s.cats.join(", ")));
      art.appendChild(head);
      art.appendChild(block("prompt", "prompt", s.prompt));
      s.responses.forEach(function (r, i) {
        var which = s.responses.length > 1 ? " " + (i + 1) : "";
        if (s.thinking) {  // a reasoning run: the thinking collapsed, then the answer that was scored
          var details = el("details", { "class": "field thinking" });
          details.appendChild(el("summary", { "class": "field-label" }, "thinking" + which + " (" + s.thinking[i].length + " characters)"));
          details.appendChild(el("pre", null, s.thinking[i]));
          art.appendChild(details);
        }
        var wrap = s.thinking ? block("answer", "answer" + which, r === null ? "(no answer: the response ended inside its thinking; scored 0)" : r)
          : block("response", "response" + which, r);
        var label = wrap.firstChild;
        if (s.thinking && r === null) label.appendChild(el("span", { "class": "badge unanswered", title: "the thinking never closed: no answer to score" }, "ended inside reasoning"));
        if (cut[i]) label.appendChild(el("span", { "class": "badge truncated", title: "finish reason: length (hit max_tokens)" }, "truncated: token limit"));
        if (clipped[i]) label.appendChild(el("span", { "class": "badge clipped", title: "only the start of this response is shown" }, "clipped for display"));
        art.appendChild(wrap);
      });
      art.appendChild(block("target", "target", s.target));
      var ex = el("dl", { "class": "extracted" });
      Object.keys(s.extracted).forEach(function (k) {
        ex.appendChild(el("dt", null, k));
        ex.appendChild(el("dd", null, s.extracted[k] === null ? "—" : s.extracted[k]));
      });
      Object.keys(s.scores).forEach(function (k) {
        ex.appendChild(el("dt", null, "score " + k));
        ex.appendChild(el("dd", null, num(s.scores[k])));
      });
      art.appendChild(ex);
      return art;
    }
    function filtered() {
      return run.samples.filter(function (s) {
        return (!state.correct || (state.correct === "correct") === s.correct) &&
          (!state.cat || s.cats.indexOf(state.cat) >= 0) &&
          (!state.text || (s.id + " " + s.prompt + " " + s.responses.join(" ")).toLowerCase().indexOf(state.text) >= 0);
      });
    }
    function render(focus) {
      var rows = filtered(), pages = Math.max(1, Math.ceil(rows.length / SAMPLES_PER_PAGE));
      state.page = Math.min(state.page, pages - 1);
      var box = document.getElementById("samples");
      clear(box);
      rows.slice(state.page * SAMPLES_PER_PAGE, (state.page + 1) * SAMPLES_PER_PAGE).forEach(function (s) { box.appendChild(card(s)); });
      var n = run.samples.filter(function (s) { return s.correct; }).length;
      document.getElementById("sample-count").textContent = rows.length + " shown of " + run.samples.length + " (" + n + " correct)";
      ["pager", "pager-bottom"].forEach(function (id) {
        pager(document.getElementById(id), state.page, pages, function (p) { state.page = p; render(); window.scrollTo(0, 0); });
      });
      if (focus) {
        var target = document.getElementById("sample-" + focus);
        if (target) { target.classList.add("focus"); target.scrollIntoView(); }
      }
    }
    function fromHash() {
      var m = /sample=([^&]+)/.exec(location.hash);
      if (!m) return null;
      var id = decodeURIComponent(m[1]);
      state.correct = ""; state.cat = ""; state.text = "";
      document.getElementById("filter-correct").value = ""; cats.value = "";
      for (var i = 0; i < run.samples.length; i++) if (run.samples[i].id === id) { state.page = Math.floor(i / SAMPLES_PER_PAGE); return id; }
      return null;
    }
    window.addEventListener("hashchange", function () { render(fromHash()); });
    render(fromHash());
  }

  /* ---------------- compare ---------------- */
  function mulberry32(seed) {
    return function () {
      seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
      var t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  /* Paired bootstrap of the difference b - a: pairs are resampled (within their stratum when strata are
   * given; the statistic is then the mean of per-stratum means, as the safety score is defined).
   * Percentile 95% CI, mulberry32 seeded with 0, BOOTSTRAP resamples. Returns {delta, lo, hi}. */
  function pairedBootstrap(diffs, strata, resamples) {
    if (resamples === undefined) resamples = BOOTSTRAP;
    var groups = {}, keys = [];
    diffs.forEach(function (d, i) {
      var g = strata ? strata[i] : "";
      if (!(g in groups)) { groups[g] = []; keys.push(g); }
      groups[g].push(d);
    });
    function statistic(pick) {
      var total = 0;
      keys.forEach(function (g) { total += pick(groups[g]); });
      return total / keys.length;
    }
    var delta = statistic(function (d) { var s = 0; d.forEach(function (x) { s += x; }); return s / d.length; });
    var rand = mulberry32(0), means = [];
    for (var r = 0; r < resamples; r++) {
      means.push(statistic(function (d) {
        var s = 0, n = d.length;
        for (var i = 0; i < n; i++) s += d[Math.floor(rand() * n)];
        return s / n;
      }));
    }
    means.sort(function (x, y) { return x - y; });
    if (!resamples) return { delta: delta, lo: null, hi: null };
    return { delta: delta, lo: means[Math.floor(0.025 * (resamples - 1))], hi: means[Math.ceil(0.975 * (resamples - 1))] };
  }
  window.LB_pairedBootstrap = pairedBootstrap;  // exposed for browser tests

  /* The paired delta's interval as the reports and the gate choose it (harness.gating.paired.paired_delta
   * and harness.gating.paired_intervals, ported line by line at 95%): the bootstrap above only where every
   * stratum has MIN_BOOTSTRAP_N pairs with MIN_STRATUM_OUTCOMES off the most common difference (else it
   * can collapse to [0, 0], certainty from 5 pairs); otherwise Tango's score interval for 0/1 scores,
   * Student-t or a bounded Tango for graded ones, a stratified Tango at the effective size for strata. */
  var Z95 = 1.9599639845400536, MIN_BOOTSTRAP_N = 30, MIN_STRATUM_OUTCOMES = 5, BISECTIONS = 100;
  var T975 = [  // t_{df, 0.975}, df = 1 .. 29 (harness.stats.T975)
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230];
  function offMode(diffs) {  // how many differences differ from the most common one
    var counts = {}, most = 0;
    diffs.forEach(function (d) { var k = String(d); counts[k] = (counts[k] || 0) + 1; if (counts[k] > most) most = counts[k]; });
    return diffs.length - most;
  }
  function bootstrapSuits(diffs) { return diffs.length >= MIN_BOOTSTRAP_N && offMode(diffs) >= MIN_STRATUM_OUTCOMES; }
  function tangoScore(improved, regressed, n, d0) {
    var a = 2 * n, b = -improved - regressed + (2 * n - improved + regressed) * d0, c = -regressed * d0 * (1 - d0);
    var pRegressed = (Math.sqrt(Math.max(0, b * b - 4 * a * c)) - b) / (2 * a);
    var variance = n * (2 * pRegressed + d0 * (1 - d0)), excess = improved - regressed - n * d0;
    if (variance <= 0) return excess === 0 ? 0 : (excess > 0 ? Infinity : -Infinity);
    return excess / Math.sqrt(variance);
  }
  function tangoInterval(improved, regressed, n) {  // bisection: the score decreases in d0
    var estimate = (improved - regressed) / n, low = -1, high = estimate, mid, i;
    for (i = 0; i < BISECTIONS; i++) {
      mid = (low + high) / 2;
      if (tangoScore(improved, regressed, n, mid) > Z95) low = mid; else high = mid;
    }
    var lower = (low + high) / 2;
    low = estimate; high = 1;
    for (i = 0; i < BISECTIONS; i++) {
      mid = (low + high) / 2;
      if (tangoScore(improved, regressed, n, mid) < -Z95) high = mid; else low = mid;
    }
    return [lower, (low + high) / 2];
  }
  function sum(values) { var s = 0; values.forEach(function (v) { s += v; }); return s; }
  function stderrOfMean(values) {
    var n = values.length;
    if (n < 2) return NaN;
    var mean = sum(values) / n;
    return Math.sqrt(sum(values.map(function (v) { return (v - mean) * (v - mean); })) / (n - 1) / n);
  }
  function tCoverage(t, df) {  // P[|T| <= t], Abramowitz & Stegun 26.7.3-4
    var theta = Math.atan(t / Math.sqrt(df)), cos2 = Math.pow(Math.cos(theta), 2), term, total, k;
    if (df % 2) {
      if (df === 1) return 2 * theta / Math.PI;
      term = total = Math.cos(theta);
      for (k = 1; k < (df - 1) / 2; k++) { term *= 2 * k / (2 * k + 1) * cos2; total += term; }
      return 2 / Math.PI * (theta + Math.sin(theta) * total);
    }
    term = total = 1;
    for (k = 1; k < df / 2; k++) { term *= (2 * k - 1) / (2 * k) * cos2; total += term; }
    return Math.sin(theta) * total;
  }
  function tQuantile(df) {
    var high = 1, low = 0, mid;
    while (tCoverage(high, df) < 0.95) high *= 2;
    for (var i = 0; i < BISECTIONS; i++) {
      mid = (low + high) / 2;
      if (tCoverage(mid, df) < 0.95) low = mid; else high = mid;
    }
    return (low + high) / 2;
  }
  function tInterval(diffs) {
    var n = diffs.length, stderr = stderrOfMean(diffs);
    if (n < 2 || !(stderr > 0)) return [NaN, NaN];
    var mean = sum(diffs) / n, half = (n < MIN_BOOTSTRAP_N ? T975[n - 2] : tQuantile(n - 1)) * stderr;
    return [mean - half, mean + half];
  }
  function masses(diffs) {  // the improvement and regression masses
    return [sum(diffs.filter(function (d) { return d > 0; })), 0 - sum(diffs.filter(function (d) { return d < 0; }))];
  }
  function smallNInterval(diffs, binary, bounded) {
    if (binary || (bounded && offMode(diffs) < MIN_STRATUM_OUTCOMES)) {
      var m = masses(diffs);
      return tangoInterval(m[0], m[1], diffs.length).concat([binary ? "tango" : "tango-bounded"]);
    }
    var t = tInterval(diffs);
    return bounded ? [Math.max(-1, t[0]), Math.min(1, t[1]), "t"] : [t[0], t[1], "t"];
  }
  function stratifiedInterval(groups, binary, bounded) {  // Tango at the effective size n* (Yan & Su)
    if (!(binary || bounded)) return [NaN, NaN, "stratified-none"];
    var weight = 1 / groups.length, inverse = 0, improved = 0, regressed = 0;
    groups.forEach(function (g) { inverse += weight * weight / g.length; });
    var effectiveN = 1 / inverse;
    groups.forEach(function (g) { improved += weight * masses(g)[0] / g.length; });
    groups.forEach(function (g) { regressed += weight * masses(g)[1] / g.length; });
    return tangoInterval(improved * effectiveN, regressed * effectiveN, effectiveN)
      .concat([binary ? "stratified-tango" : "stratified-tango-bounded"]);
  }
  /* pairedInterval(a, b, strata): a and b the two runs' per-sample scores in pair order (0/1 scores are
   * told apart from graded ones by them), strata one label per pair or null. Returns {delta (b - a, as
   * pairedBootstrap), lo, hi (null where no interval exists), method ("bootstrap", "tango", "t", ...)}. */
  function pairedInterval(a, b, strata) {
    var diffs = a.map(function (x, i) { return b[i] - x; }), groups = {}, keys = [];
    diffs.forEach(function (d, i) {
      var g = strata ? strata[i] : "";
      if (!(g in groups)) { groups[g] = []; keys.push(g); }
      groups[g].push(d);
    });
    if (keys.every(function (g) { return bootstrapSuits(groups[g]); })) {
      var boot = pairedBootstrap(diffs, strata);
      return { delta: boot.delta, lo: boot.lo, hi: boot.hi, method: "bootstrap" };
    }
    function all(test) { return a.every(test) && b.every(test); }
    var binary = all(function (v) { return v === 0 || v === 1; }), bounded = all(function (v) { return v >= 0 && v <= 1; });
    var r = strata ? stratifiedInterval(keys.map(function (g) { return groups[g]; }), binary, bounded)
      : smallNInterval(diffs, binary, bounded);
    return { delta: pairedBootstrap(diffs, strata, 0).delta, lo: isNaN(r[0]) ? null : r[0], hi: isNaN(r[1]) ? null : r[1], method: r[2] };
  }
  window.LB_pairedInterval = pairedInterval;  // exposed for browser tests
  var METHOD_NOTES = {
    "tango": "Tango's score interval for paired 0/1 scores",
    "tango-bounded": "Tango's score interval with graded changes counted as partial flips",
    "t": "Student-t interval of the mean paired difference",
    "stratified-tango": "Tango's score interval at the strata's effective size",
    "stratified-tango-bounded": "Tango's score interval at the strata's effective size, graded changes as partial flips",
    "stratified-none": "no interval: scores without a known range"
  };
  function methodNote(method) {
    return "small-n interval: too few pairs (or too few that changed) for the paired bootstrap to be trusted, so " +
      (METHOD_NOTES[method] || method) + " (the one the reports and the gate print)";
  }

  function loadScores(id, done) {
    window.LB_SCORES = window.LB_SCORES || {};
    if (window.LB_SCORES[id]) { done(); return; }
    var s = document.createElement("script");
    s.src = root + "data/scores/" + encodeURIComponent(id) + ".js";
    s.onload = done;
    s.onerror = function () { document.getElementById("compare-status").textContent = "missing scores for " + id; };
    document.head.appendChild(s);
  }

  function comparePage() {
    var data = window.LB_INDEX, a = document.getElementById("compare-a"), b = document.getElementById("compare-b");
    var byId = {};
    data.rows.forEach(function (r) {
      byId[r.id] = r;
      var label = r.label + (r.team ? " [" + r.team + "]" : "");
      a.appendChild(el("option", { value: r.id }, label));
      b.appendChild(el("option", { value: r.id }, label));
    });
    function readHash() {
      var m = {}; location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
        var p = kv.split("="); if (p[0]) m[p[0]] = decodeURIComponent(p[1] || "");
      });
      if (!m.a && !m.b) {  // no hash: the first row with a parent on the board, against its parent
        var child0 = data.rows.filter(function (x) { return x.parent_id && byId[x.parent_id]; })[0];
        if (child0) { m.a = child0.parent_id; m.b = child0.id; }
      } else if (!m.a && m.b && byId[m.b] && byId[m.b].parent_id && byId[byId[m.b].parent_id]) {
        m.a = byId[m.b].parent_id;  // B alone: against its parent
      }
      if (m.a && byId[m.a]) a.value = m.a;
      if (m.b && byId[m.b]) b.value = m.b;
      else if (data.rows.length > 1 && !m.b) {
        var r = byId[a.value];  // default B: a child of A when there is one, else the next row
        var child = data.rows.filter(function (x) { return x.parent_id === a.value; })[0];
        b.value = child ? child.id : data.rows[(data.rows.indexOf(r) + 1) % data.rows.length].id;
      }
    }
    function update() {
      var hash = "#a=" + encodeURIComponent(a.value) + "&b=" + encodeURIComponent(b.value);
      if (location.hash !== hash) history.replaceState(null, "", hash);
      loadScores(a.value, function () { loadScores(b.value, render); });
    }
    function render() {
      var sa = window.LB_SCORES[a.value], sb = window.LB_SCORES[b.value];
      var tbody = document.getElementById("compare-table").tBodies[0], flips = document.getElementById("flips");
      clear(tbody); clear(flips);
      document.getElementById("compare-status").textContent = byId[a.value].label + " (A) vs " + byId[b.value].label + " (B)";
      data.suites.forEach(function (col) {
        var suite = col.suite, x = sa[suite], y = sb[suite];
        var tr = el("tr", { "data-suite": suite });
        tr.appendChild(el("td", null, suite));
        if (!x || !y) {
          tr.appendChild(el("td", { colspan: 9, "class": "missing" }, (!x ? "A" : "B") + " has no run of this suite"));
          tbody.appendChild(tr); return;
        }
        var pos = {}; y.ids.forEach(function (id, i) { pos[id] = i; });
        var diffs = [], va = [], vb = [], strata = x.g ? [] : null, aOnly = [], bOnly = [];
        x.ids.forEach(function (id, i) {
          var j = pos[id];
          if (j === undefined || x.s[i] === null || y.s[j] === null) return;
          diffs.push(y.s[j] - x.s[i]); va.push(x.s[i]); vb.push(y.s[j]);
          if (strata) strata.push(x.g[i]);
          var ca = x.s[i] >= 1 - 1e-9, cb = y.s[j] >= 1 - 1e-9;
          if (ca && !cb) aOnly.push(id); else if (cb && !ca) bOnly.push(id);
        });
        var n = diffs.length;
        tr.appendChild(el("td", null, x.key));
        tr.appendChild(el("td", { "class": "num" }, n));
        if (!n) { tr.appendChild(el("td", { colspan: 7, "class": "missing" }, "no samples in common")); tbody.appendChild(tr); return; }
        var res = pairedInterval(va, vb, strata), delta = res.delta, bounds = [res.lo, res.hi];
        var ma = pairedBootstrap(va, strata, 0).delta, mb = pairedBootstrap(vb, strata, 0).delta;
        tr.appendChild(el("td", { "class": "num" }, pct(ma)));
        tr.appendChild(el("td", { "class": "num" }, pct(mb)));
        tr.appendChild(el("td", { "class": "num delta", "data-value": delta }, (delta >= 0 ? "+" : "") + pct(delta)));
        var ciCell = el("td", { "class": "num ci", "data-lo": bounds[0], "data-hi": bounds[1], "data-method": res.method },
          bounds[0] === null ? "—" : "[" + pct(bounds[0]) + ", " + pct(bounds[1]) + "]");
        if (res.method !== "bootstrap") {  // say when the interval is not the bootstrap the page's help describes
          ciCell.appendChild(el("span", { "class": "method-note", title: methodNote(res.method) }, res.method));
        }
        tr.appendChild(ciCell);
        tr.appendChild(el("td", { "class": "num" }, aOnly.length));
        tr.appendChild(el("td", { "class": "num" }, bOnly.length));
        var notes = [];
        if (x.settings !== y.settings) notes.push("runs under different settings (" + x.settings + " vs " + y.settings + ")");
        if (x.key !== x.metric) notes.push("per-sample " + x.key + " behind " + x.metric + (strata ? ", mean of stratum means" : ""));
        tr.appendChild(el("td", { "class": "note" }, notes.join("; ")));
        if (bounds[0] > 0 || bounds[1] < 0) tr.classList.add("significant");
        tbody.appendChild(tr);
        if (aOnly.length || bOnly.length) {
          var sec = el("section", { "class": "flip-suite", "data-suite": suite });
          sec.appendChild(el("h3", null, suite + ": flipped samples"));
          [[aOnly, "correct in A only (B regressed)", a.value], [bOnly, "correct in B only (B improved)", b.value]].forEach(function (g) {
            if (!g[0].length) return;
            sec.appendChild(el("h4", null, g[1] + ": " + g[0].length));
            var ul = el("ul");
            g[0].slice(0, 200).forEach(function (id) {
              var li = el("li", { "class": "flip" });
              li.appendChild(el("a", { href: "runs/" + a.value + "/" + suite + ".html#sample=" + encodeURIComponent(id) }, id + " (A)"));
              li.appendChild(document.createTextNode(" · "));
              li.appendChild(el("a", { href: "runs/" + b.value + "/" + suite + ".html#sample=" + encodeURIComponent(id) }, "(B)"));
              ul.appendChild(li);
            });
            sec.appendChild(ul);
          });
          flips.appendChild(sec);
        }
      });
    }
    if (!data.rows.length) return;
    readHash();
    a.addEventListener("change", update);
    b.addEventListener("change", update);
    window.addEventListener("hashchange", function () { readHash(); update(); });
    update();
  }

  /* ---------------- checkpoint ---------------- */
  function checkpointPage() {
    var cell = document.getElementById("rank");
    if (!cell) return;
    var r = (window.LB_RANKS || {})[cell.getAttribute("data-id")];
    if (!r) { cell.textContent = "unknown (data/ranks.js missing)"; return; }
    var ranked = isRanked(r);
    cell.textContent = ranked ? String(r.rank) : "not ranked";
    document.getElementById("average").textContent = r.average === null || r.average === undefined ? "—" :
      pct(r.average) + "% over " + r.average_n + " ranked suite(s)";
    var reasons = Array.isArray(r.unranked_reasons) ? r.unranked_reasons : [], list = document.getElementById("unranked-reasons");
    if (!ranked && reasons.length && list) {
      reasons.forEach(function (why) { list.appendChild(el("li", null, why)); });
      list.hidden = false;
    }
  }

  var page = document.body.getAttribute("data-page");
  if (page === "checkpoint") checkpointPage();
  else if (page === "index") indexPage();
  else if (page === "plots") plotsPage();
  else if (page === "run") runPage();
  else if (page === "compare") comparePage();
})();
