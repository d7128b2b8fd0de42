/*
Emit (letter, 1) for every letter of every string argument.

**
handler_type: mapper
*/
const jobx = require('jobx');
jobx.run(function* (input) {
  yield jobx.toReturn();
  for (const [, text] of input) {
    for (const ch of String(text).toLowerCase()) {
      if (ch >= 'a' && ch <= 'z') yield [ch, 1];
    }
  }
});
