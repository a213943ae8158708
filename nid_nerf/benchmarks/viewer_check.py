"""Check that the nerfstudio browser viewer shows a trained scene: ns-viewer + headless Chromium.

1. `ns-viewer --load-config CFG` (or `ns-train METHOD --vis viewer+tensorboard` on a scene) is started
   on a free port on 127.0.0.1, with the training camera frustums hidden, so that nothing but the
   model's render can fill the viewport.
2. Headless Chromium opens the viewer and waits for its first render.
3. viser's default browser camera sits 0.52 scene units from the origin (inside most objects), so
   the camera is dollied out with mouse-wheel events, exactly as a user would, to the median
   distance of the training cameras (camera-controls scales the orbit radius by 0.95 ** (-dy / 100)
   per wheel event of dy pixels with viser's dolly speed 0.3).
4. Screenshots are polled until the full-resolution render has arrived and stopped changing; the
   last one is saved, and the viewport is checked to hold an image with structure (pixel standard
   deviation and a share of pixels away from the background), not an empty canvas.
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from nid_nerf.benchmarks.chromium import HeadlessChromium, stop_process_group
from nid_nerf.errors import NIDInputError
from nid_nerf.io import save_image

VISER_SCALE = 10.0
"""nerfstudio's VISER_NERFSTUDIO_SCALE_RATIO: viser units per scene unit."""
VISER_START_RADIUS = math.sqrt(27.0)
"""Orbit radius (viser units) of viser 0.2's default browser camera at (-3, 3, -3)."""
VISER_MAX_RADIUS = 200.0
"""camera-controls' maxDistance in viser's client."""
WHEEL_STEP = 200.0
"""Pixels per synthetic wheel event."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def ns_script(name: str) -> str:
    """A nerfstudio console script (`ns-viewer`, `ns-train`) of this Python environment."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else name


def viewer_flags(port: int, show_train_cams: bool) -> list[str]:
    """Serve on 127.0.0.1:port only; without training frustums only the render can fill the viewport."""
    flags = ["--viewer.websocket-port", str(port), "--viewer.websocket-host", "127.0.0.1"]
    return flags if show_train_cams else flags + ["--viewer.max-num-display-images", "0"]


def ns_viewer_command(config_path: Path, port: int, show_train_cams: bool = False,
                      base: Optional[Sequence[str]] = None) -> list[str]:
    """`ns-viewer --load-config CFG` on 127.0.0.1:port (`base` replaces the `ns-viewer` executable)."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise NIDInputError(f"config '{config_path}' does not exist; pass the config.yml that ns-train wrote")
    return (list(base or [ns_script("ns-viewer")]) + ["--load-config", str(config_path)]
            + viewer_flags(port, show_train_cams))


def ns_train_command(method: str, data: Path, port: int, output_dir: Path, show_train_cams: bool = False,
                     extra: Sequence[str] = ()) -> list[str]:
    """`ns-train METHOD --vis viewer+tensorboard` on 127.0.0.1:port: the viewer of a running training job."""
    if not Path(data).is_dir():
        raise NIDInputError(f"data directory '{data}' does not exist; pass a scene folder with --train-data")
    return [ns_script("ns-train"), method, "--data", str(data), "--vis", "viewer+tensorboard",
            "--output-dir", str(output_dir), "--machine.device-type", "cpu", *viewer_flags(port, show_train_cams),
            *extra]  # fmt: skip


class ViewerProcess:
    """A process that serves the viewer on 127.0.0.1:port, stopped on exit. Use as a context manager."""

    def __init__(self, command: Sequence[str], port: int, startup_timeout: float = 300.0):
        self.command = list(command)
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.startup_timeout = startup_timeout
        self.log_path = Path(tempfile.mkstemp(prefix="nid-viewer-", suffix=".log")[1])
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> ViewerProcess:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with code {self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"no viewer at {self.url} within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process_group(self._process, signal.SIGINT)  # SIGINT: nerfstudio shuts the viewer down cleanly
        self._process = None


def load_config(config_path: Path):
    """The TrainerConfig that ns-train saved as config.yml."""
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    config = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    if not isinstance(config, TrainerConfig):
        raise NIDInputError(f"'{config_path}' is not a nerfstudio config.yml; pass the one ns-train wrote")
    return config


def training_camera_distance(config) -> float:
    """Median distance from the origin of the training cameras, in the model's (dataparser's) frame."""
    datamanager = config.pipeline.datamanager
    if datamanager.data is not None:
        datamanager.dataparser.data = datamanager.data
    outputs = datamanager.dataparser.setup().get_dataparser_outputs(split="train")
    centres = outputs.cameras.camera_to_worlds[:, :3, 3]
    return float(centres.norm(dim=-1).median())


def wheel_deltas(distance: float) -> list[float]:
    """Wheel events (pixels) that dolly viser's default camera to `distance` scene units from the origin."""
    target = min(max(distance * VISER_SCALE, 1.0), VISER_MAX_RADIUS)
    total = 100.0 * math.log(target / VISER_START_RADIUS) / math.log(1.0 / 0.95)
    count = max(1, math.ceil(abs(total) / WHEEL_STEP))
    return [total / count] * count


@dataclass
class ViewportStats:
    """How much picture the viewer's 3D viewport holds."""

    std: float
    """standard deviation of the viewport's grey levels (0-255)"""
    structured_fraction: float
    """share of viewport pixels more than 24 grey levels from the viewport's median colour"""

    def shows_scene(self, min_std: float = 6.0, min_fraction: float = 0.02) -> bool:
        return self.std >= min_std and min_fraction <= self.structured_fraction <= 1.0 - min_fraction


def viewport_stats(viewport: np.ndarray) -> ViewportStats:
    """Statistics of an RGB uint8 crop of the viewport (an 8% margin is dropped to skip the axes gizmo)."""
    height, width = viewport.shape[:2]
    mh, mw = int(0.08 * height), int(0.08 * width)
    inner = viewport[mh : height - mh, mw : width - mw].astype(np.float32)
    grey = inner.mean(axis=-1)
    distance = np.abs(inner - np.median(inner.reshape(-1, 3), axis=0)).max(axis=-1)
    return ViewportStats(std=float(grey.std()), structured_fraction=float((distance > 24).mean()))


@dataclass
class ViewerCapture:
    """The result of :func:`capture_viewer`."""

    screenshot: Path
    stats: ViewportStats
    resolution: tuple[int, int]
    """the render resolution the viewer last reported (width, height)"""
    camera_distance: float
    seconds: float
    log_tail: str = ""
    frames: list[tuple[float, str, float]] = field(default_factory=list)
    """(seconds since navigation, resolution text, viewport std) of every polled screenshot"""
    first_frame_seconds: float = math.nan
    """seconds from opening the page to the first render the viewer reported (polled every 0.5 s)"""
    full_frame_seconds: float = math.nan
    """seconds from opening the page to the first render at ``max_res`` after the camera stopped (polled every 1 s;
    the camera is moved once, right after the first render)"""

    @property
    def ok(self) -> bool:
        return self.stats.shows_scene()


_RESOLUTION = re.compile(r"Resolution:\s*(\d+)\s*[x\u00d7]\s*(\d+)")
_VIEWPORT_JS = """(() => {
  // the 3D viewport: the largest canvas, up to where the floating control panel covers it
  const c = [...document.querySelectorAll('canvas')].sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!c) return null;
  const r = c.getBoundingClientRect();
  const y = r.top + r.height / 2;
  let right = r.left;
  for (let x = r.left + 1; x < r.right; x += 2) {
    const e = document.elementFromPoint(x, y);
    if (!e || e.tagName !== 'CANVAS') break;  // viser stacks a second canvas over the WebGL one
    right = x;
  }
  return [r.left, r.top, right - r.left, r.height];
})()"""


def _resolution(browser: HeadlessChromium) -> tuple[int, int]:
    match = _RESOLUTION.search(browser.evaluate("document.body ? document.body.innerText : ''") or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def capture_viewer(
    config_path: Optional[Path],
    output: Path,
    *,
    train_data: Optional[Path] = None,
    train_method: str = "nid-field",
    train_args: Sequence[str] = (),
    camera_distance: Optional[float] = None,
    window_size: tuple[int, int] = (1280, 800),
    max_res: int = 512,
    timeout: float = 180.0,
    viewer_command: Optional[Sequence[str]] = None,
    chromium: Optional[str] = None,
    show_train_cams: bool = False,
    progress: bool = True,
) -> ViewerCapture:
    """Photograph the viewer in headless Chromium, save the PNG to `output`, measure its viewport.

    The viewer is `ns-viewer --load-config config_path`, or, with `train_data` (and no config), the
    viewer of `ns-train train_method --data train_data --vis viewer+tensorboard` while it trains.

    Args:
        config_path: config.yml written by ns-train.
        output: where the screenshot goes (written atomically).
        train_data: photograph a training job's viewer on this scene instead of a checkpoint's.
        train_method: the method `ns-train` runs with `train_data`.
        train_args: further `ns-train` arguments (e.g. ["--max-num-iterations", "3000"]).
        camera_distance: orbit radius in scene units; None: the training cameras' median distance.
        window_size: browser viewport (width, height).
        max_res: the viewer's "Max res" setting; a render this large is the final, static one.
        timeout: seconds to wait for the first render, and for the final one once the camera stops
            (a slower render is photographed as it stands when the time is up).
        viewer_command: replaces the `ns-viewer` executable (checkpoint mode).
        chromium: Chromium binary (default: `chromium` on PATH).
        show_train_cams: draw the training camera frustums (they would also fill the viewport).
        progress: print one line per polled screenshot.
    """
    start = time.monotonic()
    port = free_port()
    if config_path is None and train_data is None:
        raise NIDInputError(
            "nothing to show: pass --load-config CFG (a checkpoint) or --train-data DIR (a training job)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="nid-viewer-run-"))  # the training job's outputs
    try:
        if config_path is not None:
            command = ns_viewer_command(config_path, port, show_train_cams, base=viewer_command)
            config = load_config(config_path)
        else:
            from nid_nerf.benchmarks.method_config import make_trainer_config

            command = ns_train_command(train_method, train_data, port, scratch, show_train_cams, train_args)
            config = make_trainer_config(train_method, train_data, scratch)
        distance = camera_distance if camera_distance is not None else training_camera_distance(config)
        return _photograph(command, port, output, distance, window_size, max_res, timeout, chromium, progress, start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _photograph(command, port, output, distance, window_size, max_res, timeout, chromium, progress,
                start) -> ViewerCapture:
    """Steps 2-4 of the module docstring for the viewer that `command` serves on `port`."""
    frames: list[tuple[float, str, float]] = []
    first_frame = full_frame = math.nan
    with ViewerProcess(command, port) as viewer:
        with HeadlessChromium(chromium, window_size=window_size) as browser:
            browser.navigate(viewer.url)
            opened = time.monotonic()

            def poll() -> tuple[np.ndarray, tuple[int, int], list[float]]:
                rect = browser.evaluate(_VIEWPORT_JS)
                image = browser.screenshot()
                resolution = _resolution(browser)
                return image, resolution, rect

            # 1. the first render proves the browser's camera reached the server
            first_deadline = time.monotonic() + timeout
            while True:
                image, resolution, rect = poll()
                if rect is not None and resolution[0] > 0:
                    first_frame = time.monotonic() - opened
                    break
                if not viewer.running():
                    raise RuntimeError(f"the viewer process ended before its first render:\n{viewer.log_tail()}")
                if time.monotonic() > first_deadline:
                    raise TimeoutError(
                        f"the viewer at {viewer.url} sent no render within {timeout:.0f} s:\n{viewer.log_tail()}"
                    )
                time.sleep(0.5)
            # 2. dolly out to the training cameras' distance, as a user would with the mouse wheel
            left, top, width, height = rect
            for delta in wheel_deltas(distance):
                browser.wheel(left + width / 2, top + height / 2, delta)
            moved = time.monotonic()
            # 3. wait for the full-resolution render to arrive and settle
            previous = None
            while True:
                time.sleep(1.0)
                if not viewer.running():
                    raise RuntimeError(f"the viewer process ended while being photographed:\n{viewer.log_tail()}")
                image, resolution, rect = poll()
                left, top, width, height = (int(round(v)) for v in rect)
                viewport = image[top : top + height, left : left + width]
                stats = viewport_stats(viewport)
                frames.append((round(time.monotonic() - opened, 1), f"{resolution[0]}x{resolution[1]}",
                               round(stats.std, 2)))
                if progress:
                    print(f"viewer: t={frames[-1][0]:6.1f}s render {frames[-1][1]:>9} "
                          f"viewport std {stats.std:6.2f}", flush=True)
                settled = previous is not None and np.array_equal(previous, viewport)
                final = max(resolution) >= max_res
                if final and math.isnan(full_frame):
                    full_frame = time.monotonic() - opened
                if (final and settled and time.monotonic() - moved > 2.0) or time.monotonic() - moved > timeout:
                    break
                previous = viewport
            save_image(Path(output), image)
            log_tail = viewer.log_tail()
    return ViewerCapture(
        screenshot=Path(output),
        stats=stats,
        resolution=resolution,
        camera_distance=distance,
        seconds=time.monotonic() - start,
        log_tail=log_tail,
        frames=frames,
        first_frame_seconds=first_frame,
        full_frame_seconds=full_frame,
    )
