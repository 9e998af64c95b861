"""The explorer pages of the end-to-end workflow (tests/conftest.py's tiny_workflow) in a real browser:
headless Chromium through Playwright, each page opened from disk."""

import re

from explorer_checks import Opened

RUN_VIEWS = ("loss_0", "error", "lca_0", "cumulative", "neurons_window", "neurons_at", "classes_0", "parameters")
MAX_BYTES = 5_000_000


def _run_page(tiny_workflow):
    workdir, _, _ = tiny_workflow
    return workdir / "results" / "runs" / "tiny_sgd" / "explorer.html"


def test_run_explorer_is_one_small_offline_file(tiny_workflow):
    html = _run_page(tiny_workflow).read_text()
    assert len(html.encode()) < MAX_BYTES
    # every library inlined: no script from a file, and no style sheet, image or frame outside the scripts
    assert [tag for tag in re.findall(r"<script[^>]*>", html) if "src=" in tag] == []
    outside = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert not re.search(r"<(link|img|iframe)[^>]+(src|href)=", outside)
    assert "Not on this page" not in html  # the workflow made every optional output


def test_run_explorer_draws_every_view_and_links_them(tiny_workflow, browser, tmp_path):
    opened = Opened(browser, _run_page(tiny_workflow))
    try:
        opened.check_clean()
        for view in RUN_VIEWS:
            assert opened.marks(view), f"view {view} drew nothing"
        assert opened.page.locator("text=The paper's claims").count() == 1
        assert opened.page.locator("table.plain tr").count() > 10  # grounding and claims tables
        opened.screenshot_is_drawn(tmp_path / "views.png")
        # brushing a window of iterations on the LCA chart changes the window's views
        before = {v: opened.marks(v) for v in ("neurons_window", "classes_0", "parameters")}
        box = opened.page.locator("#views g.lca_0_marks").bounding_box()
        y = box["y"] + box["height"] / 2
        opened.page.mouse.move(box["x"] + 0.15 * box["width"], y)
        opened.page.mouse.down()
        opened.page.mouse.move(box["x"] + 0.45 * box["width"], y, steps=5)
        opened.page.mouse.up()
        opened.page.wait_for_function("Object.keys(window.lcaflowView.signal('window')).length > 0")
        after = {v: opened.marks(v) for v in before}
        assert all(after[v] != before[v] for v in before), "the brush changed no linked view"
        # the slider moves the second heat map to another iteration
        at = opened.marks("neurons_at")
        opened.page.evaluate(
            "(() => { const s = document.querySelector('#controls input[name=iteration]');"
            " s.value = 10; s.dispatchEvent(new Event('input')); })()"
        )
        opened.page.wait_for_function("window.lcaflowView.signal('iteration') == 10")
        opened.page.wait_for_timeout(200)
        assert opened.marks("neurons_at") != at
        # clicking a synchronised moment of learning moves the slider there
        moment = opened.page.locator("#views g.mark-rule.role-mark line").first
        t = int(re.match(r"t: (\d+);", moment.get_attribute("aria-label")).group(1))
        box = moment.bounding_box()
        opened.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        opened.page.wait_for_function(f"window.lcaflowView.signal('iteration') == {t}")
        assert opened.errors == []
    finally:
        opened.close()


def test_experiment_explorers_draw_with_and_without_a_comparison(tiny_workflow, browser):
    workdir, _, _ = tiny_workflow
    for experiment, comparison in (("seeds", True), ("seed0", False)):
        path = workdir / "results" / "experiments" / experiment / "explorer.html"
        opened = Opened(browser, path)
        try:
            opened.check_clean()
            for view in ("loss", "totals", "cumulative"):
                assert opened.marks(view), (experiment, view)
            assert (opened.page.locator("text=Welch t-tests").count() == 1) == comparison
            assert ("no compare_with" in path.read_text()) != comparison
        finally:
            opened.close()
