"""Video and image I/O for gen1: read clips as uint8 frames, resize them by one policy, write H.264 mp4 with
the source's audio.

One module per job:

* :mod:`gen1.media.checks` -- argument and path checks, ``MediaNotFoundError``, the file suffixes that say
  whether a path is an image or a video;
* :mod:`gen1.media.frames` -- the frame convention ``uint8 (F, H, W, 3)`` RGB and the one conversion into it;
* :mod:`gen1.media.resize` -- the resize policy (short side ``size``, aspect kept, centre crop to a multiple
  of 8; ``size`` at most ``MAX_SIZE``), for uint8 frames and float tensors alike;
* :mod:`gen1.media.read` -- ``read_video``: probing, frame selection by timestamp, decord with a PyAV
  fallback, frames resized as they are decoded so memory is bounded by the output size;
* :mod:`gen1.media.images` -- ``read_image`` and ``read_frames_or_images`` (a video, an image or an image
  folder);
* :mod:`gen1.media.write` -- ``write_video``: H.264, exact frame rate, audio copied from the source, atomic.

Every user error is a ``ValueError`` naming the argument or path and its value; a missing path raises
``MediaNotFoundError``, which is both a ``FileNotFoundError`` and a ``ValueError``.
"""

from gen1.media.checks import (
    IMAGE_SUFFIXES,
    OUTPUT_VIDEO_SUFFIXES,
    VIDEO_SUFFIXES,
    MediaNotFoundError,
    is_image_path,
    natural_key,
)
from gen1.media.frames import check_uint8_frames, to_uint8_frames, unit_to_uint8
from gen1.media.images import read_frames_or_images, read_image
from gen1.media.read import VideoClip, frame_size, frame_times, read_video, read_video_at
from gen1.media.resize import (MAX_SIZE, check_size, fit_float_frames, fit_frames, fit_tensor, resize_frames,
                               resized_shape)
from gen1.media.write import write_video

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_SIZE",
    "OUTPUT_VIDEO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "MediaNotFoundError",
    "VideoClip",
    "check_size",
    "check_uint8_frames",
    "fit_frames",
    "fit_float_frames",
    "fit_tensor",
    "frame_size",
    "frame_times",
    "is_image_path",
    "natural_key",
    "read_frames_or_images",
    "read_image",
    "read_video",
    "read_video_at",
    "resize_frames",
    "resized_shape",
    "to_uint8_frames",
    "unit_to_uint8",
    "write_video",
]
