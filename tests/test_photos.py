"""Reading users' photos: every kind of file gives RGB or a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emostyle import photos
from emostyle.photos import MIN_SIDE, centre_square, read_photo, to_tensor


def _rgb(width=96, height=80):
    """A photo whose left half is red and top rows are bright: orientation is visible."""
    x = np.zeros((height, width, 3), np.uint8)
    x[:, : width // 2, 0] = 255
    x[: height // 4, :, 1] = 200
    return x


def test_rgb_round_trip(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(path)
    photo = read_photo(path)
    assert photo.pixels.dtype == np.uint8 and photo.pixels.shape == (80, 96, 3) and photo.size == (96, 80)
    np.testing.assert_array_equal(photo.pixels, _rgb())
    assert photo.notes == ()


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after a 90 degree clockwise turn
    Image.fromarray(_rgb()).save(path, exif=exif, quality=95)
    photo = read_photo(path)
    assert photo.pixels.shape == (96, 80, 3)  # width and height swapped
    # The bright top rows of the stored image become the right columns once upright.
    assert photo.pixels[:, -5:, 1].mean() > 150 and photo.pixels[:, :5, 1].mean() < 50
    assert any("EXIF" in n for n in photo.notes)


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    image = Image.fromarray(_rgb())
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image.convert("L"), np.uint16) * 257))
    elif mode in ("I", "F"):
        image = image.convert("L").convert(mode)
    else:
        image = image.convert(mode)
    path = tmp_path / ("a.tif" if mode in ("I;16", "I", "F", "CMYK") else "a.png")
    image.save(path)
    photo = read_photo(path)
    assert photo.pixels.shape == (80, 96, 3) and photo.pixels.dtype == np.uint8
    if mode in ("L", "I;16", "I", "F"):
        grey = np.asarray(Image.fromarray(_rgb()).convert("L"))
        for c in range(3):  # replicated, with the 16-bit scale undone
            assert np.abs(photo.pixels[..., c].astype(int) - grey).max() <= 1
    if mode == "CMYK":
        assert photo.pixels[5, 5, 0] > 200 and photo.pixels[5, -5, 0] < 50
    assert photo.notes


def test_transparency_over_white(tmp_path):
    rgba = np.zeros((80, 96, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 48:, 3] = 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = read_photo(tmp_path / "a.png").pixels
    assert (pixels[:, :48] == 255).all() and (pixels[:, 48:] == [255, 0, 0]).all()


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((70, 70, 3), v, np.uint8)) for v in (10, 240)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    photo = read_photo(tmp_path / "a.gif")
    assert photo.pixels.mean() < 30 and any("frame" in n for n in photo.notes)


def test_large_photos_are_downscaled_and_huge_ones_refused(tmp_path, monkeypatch):
    Image.fromarray(_rgb(400, 160)).save(tmp_path / "wide.png")
    monkeypatch.setattr(photos, "MAX_SIDE", 200)
    photo = read_photo(tmp_path / "wide.png")
    assert photo.pixels.shape == (80, 200, 3) or photo.size == (200, 80)
    monkeypatch.setattr(photos, "MAX_PIXELS", 10_000)
    with pytest.raises(ValueError, match="megapixels|resize it first"):
        read_photo(tmp_path / "wide.png")


def test_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="photo not found"):
        read_photo(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="is a folder"):
        read_photo(tmp_path)
    (tmp_path / "song.jpg").write_text("not an image at all")
    with pytest.raises(ValueError, match="not an image"):
        read_photo(tmp_path / "song.jpg")
    Image.fromarray(_rgb(MIN_SIDE - 1, 200)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} px"):
        read_photo(tmp_path / "tiny.png")
    Image.new("RGB", (8000, 100)).save(tmp_path / "strip.png")  # 51 px high once brought to 4096 px wide
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} px on its shorter side once its longer side"):
        read_photo(tmp_path / "strip.png")
    Image.fromarray(_rgb(300, 300)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_photo(tmp_path / "cut.jpg")


def test_centre_square_and_tensor():
    square = centre_square(_rgb(120, 80), 40)
    assert square.shape == (40, 40, 3)
    x = to_tensor(square)
    assert x.shape == (1, 3, 40, 40) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert float(x[0, 0, 20, 5]) == pytest.approx(1.0, abs=0.02)  # red on the left of the centre square
