"""Bundles: a run (or a group of runs) packed with everything a reader needs to check its claim
(``pack``), checked on any machine without the run store (``verify``), and imported back into a
store (``store``). ``tarball`` holds the deterministic writer and the safe reader."""
