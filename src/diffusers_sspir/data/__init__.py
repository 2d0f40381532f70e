from .datasets import ImageFolderReport as ImageFolderReport
from .datasets import ImagePair as ImagePair
from .datasets import PairedImageFolder as PairedImageFolder
from .datasets import collate_fn as collate_fn
from .datasets import scan_image_folder as scan_image_folder
from .degradations import RealESRGANDegradation as RealESRGANDegradation
from .degradations import RealESRGANDegradationConfig as RealESRGANDegradationConfig
