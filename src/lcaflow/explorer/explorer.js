// lcaflow explorer: turn the page's column tables into rows, draw the linked views with vega-embed
// (inlined above), and mark the page as drawn (body data-rendered="yes") or failed ("error"). A click on a
// moment of learning (a rule whose datum counts its `layers`) moves the iteration slider to its frame.
(function () {
  const payload = JSON.parse(document.getElementById("lcaflow-data").textContent);
  function rows(table) {
    const names = Object.keys(table);
    if (!names.length) return [];
    const cols = names.map((n) => (Array.isArray(table[n]) ? table[n] : table[n].codes.map((i) => table[n].levels[i])));
    const out = new Array(cols[0].length);
    for (let i = 0; i < out.length; i++) {
      const row = {};
      for (let j = 0; j < names.length; j++) row[names[j]] = cols[j][i];
      out[i] = row;
    }
    return out;
  }
  function onMoment(view) {
    view.addEventListener("click", (event, item) => {
      const moment = item && item.datum && "layers" in item.datum && "t" in item.datum;
      if (!moment || !("iteration" in view.getState({ signals: (n) => n === "iteration" }).signals)) return;
      const frame = (payload.spec.usermeta || {}).frame || 1;
      view.signal("iteration", item.datum.t - (item.datum.t % frame)).runAsync();
    });
  }
  const spec = payload.spec;
  spec.datasets = {};
  for (const [name, table] of Object.entries(payload.tables)) spec.datasets[name] = rows(table);
  window.vegaEmbed("#views", spec, { renderer: "svg", actions: false })
    .then((result) => {
      window.lcaflowView = result.view;
      onMoment(result.view);
      document.body.dataset.rendered = "yes";
    })
    .catch((err) => {
      document.getElementById("views").textContent = "The views could not be drawn: " + err;
      document.body.dataset.rendered = "error";
      console.error(err);
    });
})();
