"""Age, gender and ethnicity of the faces in photos: `python -m agefair.predict PHOTO...`."""

import sys

from agefair.inference.predict import main

if __name__ == "__main__":
    sys.exit(main())
