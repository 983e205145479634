"""What counts as a copy: the hash radius for candidates and the residual bound that confirms one.

The two thresholds live here, without numpy, so that ``imgclf prepare --help`` can show them without
importing the hashing and pixel-check modules that use them (:mod:`imgclf.data.duplicates`,
:mod:`imgclf.data.verify`).
"""

from __future__ import annotations

#: Hash radius for candidates: altered copies of bench/dedup_corpus.py's photos sat at most 6 bits from
#: their original's whole or crop hash (1,200 copies; 800 further 5 % crops), and all 8,574 copies of the
#: 10k set were found at 7. The 4x16-bit index then probes 1-bit flips only; radius 11 probes 2-bit flips
#: (6x slower, measured at 10k hashes).
CANDIDATE_RADIUS = 7
#: A copy's largest residual ratio: after the best alignment (scale, crop, brightness gain and offset),
#: no 8x8 block of the 64 px comparison may keep more than this multiple of its own detail energy (plus
#: 2 grey levels of noise). Re-encoding, resizing or a brightness change can at most *remove* a block's
#: detail (ratio <= 1); a different capture adds its own (two independent blocks: ratio ~2, more where
#: the content differs). Measured on neighbouring tiles of scikit-image's photographs and textures, frames
#: of a moving crop and Fashion-MNIST boots (bench/dedup_corpus.py, 2026-12-06): 475 planted copies over
#: the whole range of each change (JPEG q30-95, scale 0.4-1, crops 0-10 % per side, brightness +-15 %)
#: scored <= 1.09; 492 neighbouring look-alike pairs scored >= 2.33. 1.5 sits between (their geometric mean, 1.6, rounded down).
COPY_RESIDUAL_BOUND = 1.5
