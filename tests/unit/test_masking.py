"""coretriage/masking.py: what is shown of a stored crash is masked as it is read."""


def test_a_stored_exception_message_is_masked_when_read():
    from coretriage.masking import mask_analysis

    shown = mask_analysis({"exception": {"type": "std::runtime_error",
                                         "what": "login failed: https://ops:s3cret@vault.internal/v1"}})
    assert "s3cret" not in shown["exception"]["what"] and shown["exception"]["type"] == "std::runtime_error"
