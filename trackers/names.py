"""The tracker names and the SAM 2 checkpoint hint, shared by the builder and the prompt checks (no imports)."""

TRACKERS = ("auto", "sam2", "sam3", "edgetam", "flow", "static")
#: Trackers that take point and box prompts besides masks.
PROMPTABLE_TRACKERS = ("sam2", "sam3", "edgetam")
CHECKPOINT_ENV = "GARVIDEO_SAM2_CHECKPOINT"

HOW_TO_GET_SAM2 = (
    f"pass --sam2-checkpoint PATH (a SAM 2.1 .pt file) or a hub id such as facebook/sam2.1-hiera-tiny "
    f"when online, or set {CHECKPOINT_ENV}"
)
