"""Judges: emotion readers that did not guide the image (see `emostyle.parts.Judge`).

Each reads the saved 8-bit images with a model other than the one the guidance optimised,
so an emotion metric measures what a viewer of the PNG sees, not what the guiding encoder
was pushed to score:
- `FerJudge`: the FER2013 expression classifier; judges faces guided in CLIP space
  (paper-ffhq), never faces it guided itself (offline).
- `LandmarkJudge`: the lip-corner geometry of dlib's 68 facial landmarks (AU12 smile vs
  AU15 lip-corner depression); judges the offline profile's faces, which FER guided.
  `face_landmarks` gives the 68 points of one image for other uses (face alignment).
- `ExpressionJudge`: a second FER2013 classifier (the `facial_emotion_recognition` package's
  four-layer CNN), independent of the guiding mini-Xception; also for the offline faces.
- `BlendshapeJudge`: MediaPipe Face Landmarker's face blendshapes (mouth smile - mouth frown),
  its three TFLite models run without the mediapipe package; also for the offline faces.
- `ColourEmotionJudge`: published colour-emotion data (Palmer et al. 2013 happy/sad
  associations; Ou et al. 2004 colour activity) per pixel in CIELAB; judges the offline
  profile's scenes, which Valdez & Mehrabian's brightness-saturation equations guided.
"""

from .blendshapes import BlendshapeJudge
from .expression import ExpressionJudge
from .face import LandmarkJudge, face_landmarks, mouth_geometry
from .fer import FerJudge
from .scene import ColourEmotionJudge

__all__ = ["FerJudge", "ExpressionJudge", "LandmarkJudge", "BlendshapeJudge", "ColourEmotionJudge", "face_landmarks", "mouth_geometry"]
