"""The dataset stages: sample naming, the train/val/test file lists, 300W_AUG (in-plane
rotated training copies) and the angle distributions of the sets."""
