"""What counts as a near copy: the hash radius for candidates and the detail correlation that confirms one.

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
#: Minimum detail correlation for "near copy". Measured with bench/dedup.py (2-core shared build machine,
#: 2026-12-02, best alignment): altered copies (JPEG q40, x0.5, 5 % crop, brightness +-10 %, PNG) scored
#: >= 0.937 over 1,200 pairs of 200 photos and >= 0.926 over 8,574 pairs of the 10k set (lowest: the
#: 5 % crops); the 298 pairs checked among 500 look-alike distinct micrographs (median pHash
#: nearest-neighbour distance 12) scored <= 0.794. 0.88 sits between, 0.05 below the copies and 0.09
#: above the look-alikes.
NEAR_COPY_THRESHOLD = 0.88
