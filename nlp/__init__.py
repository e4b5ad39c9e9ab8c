"""Risk Radar NLP: spaCy components that say what a notice is about, each finding with its evidence."""
