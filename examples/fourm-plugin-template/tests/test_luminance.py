import numpy as np

from fourm_core.testing import ModalityPluginTests, sample_photos


class TestLuminance(ModalityPluginTests):
    modality = "luminance"

    def example_raw(self):
        return self.spec.labeler.build()({"rgb": sample_photos(2)})

    def tokenizer_kwargs(self):
        return {"dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}


def test_luminance_of_pure_colours():
    from fourm_luminance.components import LuminanceLabeler

    img = np.zeros((4, 4, 3), np.uint8)
    img[:, :2] = (255, 0, 0)
    img[:, 2:] = (255, 255, 255)
    (y,) = LuminanceLabeler()({"rgb": [img]})
    assert y.shape == (4, 4, 1) and y[0, 0, 0] == 76 and y[0, 3, 0] == 255
