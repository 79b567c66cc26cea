"""The verdict: what a gate run found, check by check, and what it was computed on."""
