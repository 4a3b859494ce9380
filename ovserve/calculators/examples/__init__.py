"""Example calculators, small enough to read in one go (see the README, "Write your own calculator")."""
