from pathlib import Path

# The real Iglu Central registry (schemas only), kept in the repository for hermetic tests.
IGLU_CENTRAL = Path(__file__).resolve().parents[2] / "data" / "iglu-central"
