"""The user-facing prediction tool: face detection, cropping, prediction and drawing on images
and videos; and the several-model report, which scores models under predict's detector crop
beside the protocol crops (:mod:`headpose.app.model_report`)."""
