"""Text for the auxiliary ASR task: transcripts and character CTC.

* :mod:`ser_lib.text.transcripts`: reading a corpus's transcripts (IEMOCAP's
  ``dialog/transcriptions`` files, EmoDB's sentence table), normalising them for
  character CTC and joining them to the manifests;
* :mod:`ser_lib.text.ctc`: the character vocabulary, the CTC loss, greedy decoding
  and the word error rate.
"""
