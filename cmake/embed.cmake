# Turns a text file into a C++ raw string literal include: file(READ) then wrap.
file(READ ${IN} CONTENT)
file(WRITE ${OUT} "R\"BULWARK_EMBED(${CONTENT})BULWARK_EMBED\"")
