"""Both apps driven in headless Chromium, as a user drives them: one sampling run, and one inpainting run
with a mask painted with the brush. Screenshots go to outputs/browser/.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``pip install selenium``; skipped
where either is missing. Run with ``python -m pytest -m browser`` (about a minute).
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tiny_chain import with_demo_validation, write_chain

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "outputs" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no headless browser: apt-get install chromium chromium-driver", allow_module_level=True)
WAIT = 120  # seconds: the first run loads the chain and compiles nothing, but CI machines are slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chain_yaml(tmp_path_factory):
    """The tiny chain with DemoScenes validation pictures to edit."""
    return with_demo_validation(write_chain(tmp_path_factory.mktemp("browser_chain")))


def serve(script: str, config: Path):
    """``streamlit run`` on a free port; returns (process, url) once the server answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "scripts" / script), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--", str(config), "--threads", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + WAIT
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not start: {process.stdout.read()[-2000:]}")


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def app(request, chain_yaml):
    process, url = serve(request.param, chain_yaml)
    yield url
    process.terminate()
    process.wait(timeout=30)


def button(driver, text: str):
    return WebDriverWait(driver, WAIT).until(expected_conditions.element_to_be_clickable(
        (By.XPATH, f"//button[.//p[normalize-space()='{text}']]")))


def wait_for_text(driver, text: str):
    WebDriverWait(driver, WAIT).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path


@pytest.mark.parametrize("app", ["sample_imagebart.py"], indirect=True)
def test_sampling_app_samples_in_the_browser(app, browser):
    browser.get(app)
    button(browser, "Sample").click()
    wait_for_text(browser, "samples in")
    assert "earlier settings" not in browser.find_element(By.TAG_NAME, "body").text
    assert screenshot(browser, "sample_app.png").stat().st_size > 10_000


@pytest.mark.parametrize("app", ["inpaint_imagebart.py"], indirect=True)
def test_inpainting_app_edits_a_painted_region_in_the_browser(app, browser):
    browser.get(app)
    wait_for_text(browser, "Mask")
    # choose the brush in the mask selectbox: open its list, click the option
    WebDriverWait(browser, WAIT).until(expected_conditions.element_to_be_clickable(
        (By.XPATH, "//div[contains(@class, 'st-key-mask_preset')]//button[@aria-label='Open']"))).click()
    WebDriverWait(browser, WAIT).until(expected_conditions.element_to_be_clickable(
        (By.XPATH, "//*[@role='option'][contains(., 'draw the region to generate with a brush')]"))).click()
    wait_for_text(browser, "Paint over the region to generate")
    # the canvas component renders into a shadow root; fabric.js takes the mouse on its upper canvas
    host = WebDriverWait(browser, WAIT).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, ".st-key-mask_canvas [data-testid='stBidiComponentIsolated']")))
    top = WebDriverWait(browser, WAIT).until(lambda d: host.shadow_root.find_elements(By.CSS_SELECTOR,
                                                                                       "canvas.upper-canvas"))[0]
    strokes = ActionChains(browser).move_to_element_with_offset(top, -60, -60).click_and_hold()
    for dx, dy in ((40, 0), (40, 0), (0, 30), (-40, 0), (-40, 0), (0, 30), (80, 0)):
        strokes = strokes.move_by_offset(dx, dy)
    strokes.release().perform()
    wait_for_text(browser, "tokens are generated")
    screenshot(browser, "inpaint_app_brush.png")
    button(browser, "Sample with chain").click()
    wait_for_text(browser, "original | masked input")
    assert screenshot(browser, "inpaint_app_result.png").stat().st_size > 10_000
