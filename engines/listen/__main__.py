"""`python -m backline.engines.listen --train-key`: how weights/key was made."""

import argparse

from backline.engines.listen import train_key_finder

ap = argparse.ArgumentParser(description="train the key scorer on composed corpus songs")
ap.add_argument("--train-key", action="store_true")
ap.add_argument("--songs", type=int, default=3000)
ap.add_argument("--seed", type=int, default=11)
a = ap.parse_args()
if a.train_key:
    print(train_key_finder(a.songs, a.seed))
