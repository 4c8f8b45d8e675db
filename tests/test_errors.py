import pickle

from bidrn.errors import BidrnError, InputFileError


def test_input_file_error_names_the_file_and_survives_pickling():
    error = InputFileError("data/a.jpg", "image file is truncated")
    assert str(error) == "data/a.jpg: image file is truncated"
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, BidrnError)
    assert (copy.path, copy.problem, str(copy)) == (error.path, error.problem, str(error))
