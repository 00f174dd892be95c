"""Network parts of the Radscribe model: image encoder, text encoder, fusion, gating, heads."""
