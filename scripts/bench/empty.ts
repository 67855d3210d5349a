/*T:736 The other floor: Deno starting and ending with nothing to do. :*/
export {};
