"""The user-facing prediction tool: face detection, cropping, prediction and drawing on images
and videos."""
