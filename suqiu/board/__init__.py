"""Floor 5, the board column: the supervision board (督办与绩效看板): server-rendered pages over the API's own query functions."""
