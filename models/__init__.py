"""What personastream learns: session features, the intent model and the persona model."""
