"""ser_lib.synth."""
