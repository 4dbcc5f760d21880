/* Keeps the test_support library non-empty before any shared test helper exists. */
typedef int test_support_translation_unit_is_not_empty;
