"""The parameter groups of a 4M-21 ``human_poses`` instance (plain data: ``plugin.py`` reads it).

Each group is written as its name followed by ``count`` ``v0=`` tokens. Continuous groups are clipped to
``[lo, hi]`` and written as ``round(scale · v + offset)``, which maps the range onto 0..999:

===========  =====  ==============  ======================================================
group        count  range           meaning
===========  =====  ==============  ======================================================
``pose``     8      ids 0..1023     body pose as the ids of 4M-21's pose VQ-VAE; ids ≥ 512 are
                                    written ``v1=id-512``
``global``   9      [-1, 1]         global orientation, a 3 × 3 rotation matrix, row-major
``camera``   3      [-1, 19]        HMR2's weak-perspective camera (s, tx, ty)
``shape``    10     [-3, 3]         SMPL shape coefficients (betas)
===========  =====  ==============  ======================================================
"""

from __future__ import annotations

#: the groups in the order 4M-21 indexes with its random permutation
GROUP_ORDER = ("pose", "global", "camera", "shape")
#: group → number of values
COUNTS = {"pose": 8, "global": 9, "camera": 3, "shape": 10}
#: continuous group → (lo, hi, scale, offset): token = round(scale · clip(v, lo, hi) + offset)
LINEAR = {"global": (-1.0, 1.0, 499.5, 499.5), "camera": (-1.0, 19.0, 49.95, 49.95),
          "shape": (-3.0, 3.0, 166.5, 499.5)}
#: pose ids of the pose VQ-VAE: 0..1023, the upper half on the v1= axis
POSE_CODES = 1024
POSE_SPLIT = 512
#: words of the text; 4M-21's vocabulary has them as ordinary words, ours declares them whole
SPECIAL_TOKENS = ("human", "none", *GROUP_ORDER)
