"""``vitalstream demo``: the whole pipeline on one machine, on the embedded AWS emulator."""
