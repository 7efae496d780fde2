"""`platestream soak`: the whole pipeline on a three-node cluster under a seeded schedule of
faults, checked at the end for anything lost or duplicated."""
