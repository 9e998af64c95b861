"""What every explorer page must do in a real browser (tests/test_explorer.py and the tests of runs that
lack optional outputs): load from a file URL, draw without a console error, and request nothing but itself."""

from pathlib import Path

import numpy as np


class Opened:
    """A page loaded from disk in headless Chromium, with what it logged and requested."""

    def __init__(self, browser, path: Path):
        self.url = Path(path).resolve().as_uri()
        self.errors, self.requests, self.failed = [], [], []
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.goto(self.url)
        self.page.wait_for_function("document.body.dataset.rendered", timeout=60_000)

    def check_clean(self) -> None:
        """Drawn, no console error or warning, no request but the page itself, none failed."""
        assert self.page.evaluate("document.body.dataset.rendered") == "yes", self.errors
        assert self.errors == [] and self.failed == [], (self.errors, self.failed)
        assert self.requests == [self.url], self.requests

    def marks(self, name: str) -> list[str]:
        """The fill of every mark of the named view (e.g. "neurons_window")."""
        return self.page.evaluate(
            f"Array.from(document.querySelectorAll('#views g.{name}_marks path')).map(p => p.getAttribute('fill') || p.getAttribute('d'))"
        )

    def screenshot_is_drawn(self, path: Path) -> None:
        """A screenshot of the views with colours and ink: not blank."""
        from PIL import Image

        self.page.locator("#views").screenshot(path=str(path))
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        ink = (pixels < 200).any(axis=1).mean()
        colours = len(np.unique(pixels, axis=0))
        assert ink > 0.03 and colours > 50, (ink, colours)

    def close(self) -> None:
        self.page.close()
