"""Options are validated up front: every bad value names the option and the rule."""

import pytest

from engine.errors import InvalidOptions
from engine.options import options_to_dict, parse_options


def test_defaults_are_valid():
    parsed = parse_options({})
    assert parsed.swap.swapper == "auto"
    assert parsed.swap.selector == "one"
    assert parsed.output.video_codec == "h264"


def test_values_are_coerced_from_cli_strings():
    parsed = parse_options({"mask_blur": "0.5", "crf": "20", "color_correction": "false"})
    assert parsed.swap.mask_blur == 0.5
    assert parsed.output.crf == 20
    assert parsed.swap.color_correction is False


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"swapper": "Deep Fake!"}, "swapper must name a model"),
        ({"mask_types": "box,fog"}, "mask_types must be one of"),
        ({"enhancer_blend": [0.5, 0.5], "enhancer": "gfpgan_1.4"}, "one per enhancer"),
        ({"pixel_boost": "big"}, "pixel_boost must be auto, native"),
        ({"face_ages": "40-20"}, "face_ages must be MIN-MAX"),
        ({"selector": "all"}, "selector must be one of"),
        ({"mask_blur": 3}, "mask_blur must be between"),
        ({"mask_blur": "soft"}, "'mask_blur' must be a number"),
        ({"crf": 1.5}, "'crf' must be an integer"),
        ({"quality": 0}, "quality must be an integer between"),
        ({"trim_start": 5, "trim_end": 2}, "trim_end must be after trim_start"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"selector": None}, "may not be null"),
        ({"detect_every": True}, "'detect_every' must be an integer"),
    ],
)
def test_bad_options_name_the_problem(options, fragment):
    with pytest.raises(InvalidOptions, match=fragment.replace("(", r"\(")):
        parse_options(options)


def test_extra_keys_pass_through_and_round_trip():
    parsed = parse_options({"priority": 5, "swapper": "classic"}, extra_keys=("priority",))
    assert parsed.extra == {"priority": 5}
    again = parse_options(options_to_dict(parsed), extra_keys=("priority",))
    assert again == parsed


@pytest.mark.parametrize("case", ["digits", "huge", "inf", "nan", "1e300"])
def test_huge_or_non_finite_integers_are_refused_with_a_short_message(case):
    value = {
        "digits": "9" * 5000,
        "huge": 10**5000,  # pytest's ids would try to print it
        "inf": float("inf"),
        "nan": float("nan"),
        "1e300": 1e300,
    }[case]
    with pytest.raises(InvalidOptions) as refused:
        parse_options({"crf": value})
    assert len(refused.value.message) < 200
