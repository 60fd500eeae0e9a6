"""Motion-compensated frame interpolation: a few generated frames brought to the output rate.

SVD makes one window of frames (25 at most, as trained) spread over the whole shot by its fps
micro-conditioning; FFmpeg's `minterpolate` (in PyAV's own FFmpeg, through a filter graph)
estimates the motion between neighbouring frames and draws the in-between frames along it,
so a moving thing moves rather than fading out in one place and in at another, as a
cross-fade of the two frames would show it.

`blend` is that cross-fade: a fraction of the cost, for pictures with no motion worth
following (the offline profile's random-weight frames are noise). The studio path, `tiny`
and the tests keep `motion`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterator

import numpy as np
from PIL import Image

# Motion-compensated interpolation (mci) with adaptive overlapped-block compensation;
# bilateral motion estimation (vectors through the frame being made, the usual choice for
# interpolation: with bidirectional estimation a moved pattern came out half blended) with
# uneven multi-hexagon search (the default diamond search missed motion that this finds);
# no scene-change detection (a shot is one scene, and a false detection would blend).
MINTERPOLATE = "mi_mode=mci:mc_mode=aobmc:me_mode=bilat:me=umh:vsbmc=1:scd=none"
METHOD = "minterpolate (mci, aobmc, bilat, umh)"
BLEND = "blend (cross-fade of neighbouring frames)"


def _pull_all(graph, into: list) -> None:
    import av

    while True:
        try:
            into.append(graph.vpull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def interpolate(frames: list[Image.Image], count: int, fps: int,
                mode: str = "motion") -> tuple[Iterator[Image.Image], str]:
    """`count` frames at `fps` whose first and last are the first and last generated frame,
    the generated frames spaced evenly between them; and the method used, for the manifest.
    With as many generated frames as needed or more, frames are picked, not made.
    `mode`: "motion" (motion-compensated) or "blend" (a cross-fade between neighbours)."""
    generated = len(frames)
    if count <= generated or generated < 2:
        picks = [0] if count == 1 or generated == 1 else [round(i * (generated - 1) / (count - 1)) for i in range(count)]
        return (frames[i] for i in picks), "none"
    if mode == "blend":
        return _blend(frames, count), BLEND
    if mode != "motion":
        raise ValueError(f"unknown interpolation {mode!r}: motion or blend")
    return _minterpolate(frames, count, fps), METHOD


def _blend(frames: list[Image.Image], count: int) -> Iterator[Image.Image]:
    # Output frame i sits at i * (generated-1) / (count-1) generated frames: mix the two
    # generated frames either side of it by how far along it is.
    last = len(frames) - 1
    for i in range(count):
        position = i * last / (count - 1)
        left = min(int(position), last - 1)
        alpha = position - left
        if alpha < 1e-6:
            yield frames[left]
        elif alpha > 1 - 1e-6:
            yield frames[left + 1]
        else:
            yield Image.blend(frames[left], frames[left + 1], alpha)


def _minterpolate(frames: list[Image.Image], count: int, fps: int) -> Iterator[Image.Image]:
    import av
    from av.filter import Graph

    generated = len(frames)
    width, height = frames[0].size
    # Generated frame i sits at output frame i * (count-1) / (generated-1): in a time base of
    # 1 / (fps * (generated-1)) that is the whole number i * (count-1).
    time_base = Fraction(1, fps * (generated - 1))
    graph = Graph()
    source = graph.add("buffer", f"video_size={width}x{height}:pix_fmt=rgb24:"
                                 f"time_base={time_base.numerator}/{time_base.denominator}:frame_rate={fps}")
    # minterpolate works on YUV: full-resolution chroma (4:4:4) keeps colours as generated.
    chain = [source, graph.add("format", "yuv444p"), graph.add("minterpolate", f"fps={fps}:{MINTERPOLATE}"),
             graph.add("format", "rgb24"), graph.add("buffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    made: list = []
    # minterpolate holds back the frames after the last one it has a successor for: two more
    # copies of the last frame let it finish the shot.
    for i, image in enumerate(frames + [frames[-1]] * 2):
        frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
        frame.pts = i * (count - 1)
        frame.time_base = time_base
        graph.vpush(frame)
        _pull_all(graph, made)
    graph.vpush(None)
    _pull_all(graph, made)
    out = [f for f in made if 0 <= f.pts < count][:count]
    if len(out) < count:  # never seen; a short clip would break compose's frame count
        raise RuntimeError(f"minterpolate gave {len(out)} frames of {count}")
    return (f.to_image() for f in out)
