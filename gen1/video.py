"""Video and image I/O for gen1 -- the long-standing import path of :mod:`gen1.media`.

``from gen1.video import read_video, write_video, VideoClip, IMAGE_SUFFIXES, ...`` keeps working: this module
re-exports the public API of :mod:`gen1.media`, where the code lives, one module per job (checks, frames,
resize, read, images, write); see that package for the policies (frame selection, the resize policy, memory
bounds, audio passthrough).
"""

from gen1.media import *  # noqa: F401,F403 -- the re-export is this module's purpose
from gen1.media import __all__  # noqa: F401
