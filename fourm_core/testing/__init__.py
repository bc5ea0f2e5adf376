"""Testing support for fourm and for plugin authors.

* ``fourm_core.testing.plugin`` is a pytest plugin (auto-loaded through the ``pytest11`` entry point) with fixtures
  (``fourm_registry``, ``fourm_text_vocabulary``) and the ``--fourm-modality`` option.
* ``fourm_core.testing.conformance`` is the conformance suite, one test per check parametrised over every registered
  modality (or the ones selected with ``--fourm-modality``). Run it on your plugin with::

      pytest --pyargs fourm_core.testing.conformance --fourm-modality mymodality

* ``fourm_core.testing.checks`` holds the checks as plain functions (``fourm validate`` uses them too).
* ``fourm_core.testing.serializers`` holds the assertions a plugin's own serializer tests share (parse errors that
  name the token, values refused when writing, random token soup, official value-token ids).
"""
